"""Checked loading of our checkpoints.

No Lightning import here: `sentiment-predict` starts in a fraction of the time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_sentiment.errors import SentimentError

DATA_STATE_KEY = "SentimentDataModule"  # where Lightning stores the DataModule's state_dict


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A lightning-sentiment checkpoint, checked: weights, network config, vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise SentimentError(f"checkpoint {path} does not exist: pass the .ckpt file of a training run")
    try:
        # Our checkpoints hold plain Python containers besides tensors, hence weights_only=False.
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise SentimentError(
            f"{path} is not a readable checkpoint ({type(err).__name__}): pass a .ckpt file"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise SentimentError(
            f"{path} is not a PyTorch Lightning checkpoint: pass the .ckpt of a training run"
        )
    net = ckpt.get("hyper_parameters", {}).get("net")
    data = ckpt.get(DATA_STATE_KEY) or {}
    if not isinstance(net, dict) or "vocab" not in data or "preprocessing" not in data:
        raise SentimentError(
            f"{path} is a checkpoint of another kind (no lightning-sentiment network or vocabulary inside)"
        )
    return ckpt
