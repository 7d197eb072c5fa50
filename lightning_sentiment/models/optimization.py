"""The optimizer and scheduler built from their Hydra partials, and gradient clipping
that also serves a fused optimizer in mixed precision."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.utilities import GradClipAlgorithmType

from lightning_sentiment.errors import settings_of

# scheduler-config keys that Lightning reads beside the scheduler, not torch's settings
LIGHTNING_SCHEDULER_KEYS = ("monitor", "interval", "frequency")


def build_optimization(
    optimizer_cfg: dict, scheduler_cfg: dict | None, params
) -> tuple[torch.optim.Optimizer, dict | None]:
    """The configured optimizer over `params`, and the scheduler entry Lightning takes
    (the scheduler beside its `monitor`, `interval`, `frequency`), if one is set."""
    with settings_of("model.optimizer"):
        optimizer = instantiate(optimizer_cfg)(params=params)
    if not scheduler_cfg:
        return optimizer, None
    scheduler_cfg = dict(scheduler_cfg)
    lightning_keys = {k: scheduler_cfg.pop(k) for k in LIGHTNING_SCHEDULER_KEYS if k in scheduler_cfg}
    with settings_of("model.scheduler"):
        scheduler = instantiate(scheduler_cfg)(optimizer=optimizer)
    return optimizer, {"scheduler": scheduler, **lightning_keys}


def clip_gradients(
    module: pl.LightningModule, optimizer: torch.optim.Optimizer, clip_val, algorithm: str | None
) -> None:
    """Clip as Lightning does, also for a fused optimizer in mixed precision.

    Lightning refuses that pair (a fused step unscales fp16 gradients itself), but
    torch's scaler lets the gradients be unscaled first: its step then skips that.
    """
    if not clip_val:  # Lightning passes the trainer's value: none set, nothing to clip
        return
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        plugin = module.trainer.precision_plugin
        if getattr(plugin, "scaler", None) is not None:  # an inf/NaN found here still skips the step
            plugin.scaler.unscale_(optimizer)
        # Lightning's own clipping, without the mixed-precision plugin's refusal
        Precision.clip_gradients(plugin, optimizer, clip_val, GradClipAlgorithmType(algorithm or "norm"))
        return
    module.clip_gradients(optimizer, clip_val, algorithm)
