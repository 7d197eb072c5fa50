"""Test-only helpers: callbacks injected from the command line as
+callbacks.NAME._target_=..., train.py in a subprocess, a quiet Trainer, three short
reviews padded either way."""

import os
import signal

import pytorch_lightning as pl
import torch

from lightning_sentiment.data import SentimentDataModule
from lightning_sentiment.data.text import pad_sequences


class SignalAt(pl.Callback):
    """Send `signal_name` to this process at a given epoch and batch (a crash or Ctrl-C)."""

    def __init__(self, epoch: int, batch: int, signal_name: str = "SIGKILL") -> None:
        self.epoch, self.batch, self.signal = epoch, batch, getattr(signal, signal_name)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signal)


def run_train_py(*args: str, cwd, timeout: int = 600):
    """`python train.py ARGS` in a subprocess, as a user would run it."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "train.py"
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        # Ctrl-C tests need Python's KeyboardInterrupt handler in the child, which it
        # only installs when SIGINT is not ignored: a shell's background job ignores it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU Trainer that logs, prints and summarizes nothing; `kwargs` add to or override it."""
    settings = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**(settings | kwargs))


REVIEWS = [torch.tensor([5, 3, 9, 2]), torch.tensor([7]), torch.tensor([4, 4, 8, 1, 6, 2, 3])]


def padded(width: int, padding: str) -> torch.Tensor:
    """`REVIEWS` as one (3, width) batch, padded and truncated "pre" or "post"."""
    return torch.from_numpy(pad_sequences([r.numpy() for r in REVIEWS], maxlen=width, padding=padding))


def make_dm(tmp_path, **kwargs) -> SentimentDataModule:
    """A DataModule under tmp_path with small test sizes unless `kwargs` say otherwise."""
    kwargs.setdefault("data_dir", str(tmp_path / "data"))
    kwargs.setdefault("vocab_size", 50)
    kwargs.setdefault("batch_size", 8)
    return SentimentDataModule(**kwargs)
