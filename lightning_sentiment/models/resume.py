"""What a resumed run changes: the plateau steps its checkpoint missed, and the optimizer
and scheduler settings given anew on the command line (Lightning restores the
checkpoint's and would ignore them silently)."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_sentiment.errors import SentimentError
from lightning_sentiment.models.optimization import LIGHTNING_SCHEDULER_KEYS

log = logging.getLogger(__name__)

# Keys of the optimizer/scheduler configs that are not settings of the torch objects.
_NOT_SETTINGS = {"_target_", "_partial_", *LIGHTNING_SCHEDULER_KEYS}


def changed_settings(saved: dict, current: Any) -> dict[str, dict]:
    """{"optimizer": {key: new value}, "scheduler": {...}}: what differs from the checkpoint's."""
    changed = {}
    for name in ("optimizer", "scheduler"):
        before, now = saved.get(name) or {}, current.get(name) or {}
        if not before or not now or before.get("_target_") != now.get("_target_"):
            continue  # none then, or another class: Lightning's restore decides
        changed[name] = {
            k: v for k, v in now.items() if k not in _NOT_SETTINGS and k in before and before[k] != v
        }
    return changed


def update_scheduler(scheduler: Any, new_lr: bool, changes: dict) -> None:
    """A restored scheduler takes a resumed run's new learning rate and settings."""
    lrs = [group["lr"] for group in scheduler.optimizer.param_groups]
    if new_lr:
        scheduler._last_lr = lrs
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = lrs
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.num_bad_epochs = 0  # a new rate gets the whole patience
    for key, value in changes.items():
        if key == "min_lr":  # kept per parameter group
            key, value = "min_lrs", value if isinstance(value, list) else [value] * len(lrs)
        if not hasattr(scheduler, key):
            raise SentimentError(
                f"model.scheduler.{key} cannot change on resume: resume with the checkpoint's value"
            )
        setattr(scheduler, key, value)
    if "mode" in changes and isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        # its best so far was judged the other way round: start the search again
        scheduler._init_is_better(scheduler.mode, scheduler.threshold, scheduler.threshold_mode)
        scheduler._reset()


def replay_plateau_steps(trainer: pl.Trainer, history: dict[int, dict], epoch: int) -> None:
    """Give a resumed run the ReduceLROnPlateau steps its checkpoint missed.

    Lightning saves epoch-end checkpoints before it steps plateau schedulers and, on
    resume, skips that step (it has no metrics). The history in the checkpoint (epoch ->
    metrics) has them: replay up to `epoch`, so the resumed run keeps the uninterrupted
    run's learning rate.
    """
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            continue
        while scheduler.last_epoch < epoch:
            metric = history.get(scheduler.last_epoch, {}).get(config.monitor)
            if metric is None:
                break
            scheduler.step(metric)


def apply_resume_changes(trainer: pl.Trainer, changes: dict[str, dict]) -> None:
    """Apply the optimizer and scheduler settings that a resumed run changed
    (`changed_settings`).

    Settings equal to the checkpoint's keep the restored state (a learning rate the
    plateau rule has cut stays cut).
    """
    optimizer_changes = changes.get("optimizer", {})
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            for key, value in optimizer_changes.items():
                group[key] = tuple(value) if isinstance(group.get(key), tuple) else value  # betas
            if "lr" in optimizer_changes and "initial_lr" in group:
                group["initial_lr"] = group["lr"]  # where schedulers count from
    for config in trainer.lr_scheduler_configs:
        update_scheduler(config.scheduler, "lr" in optimizer_changes, changes.get("scheduler", {}))
    for name, changed in changes.items():
        for key, value in changed.items():
            log.info("resumed with model.%s.%s=%s (the checkpoint had another value)", name, key, value)


def save_rng_states(checkpoint: dict) -> None:
    """Random states at the epoch boundary, so a resumed run draws the same dropout
    masks. Torch's only: data order comes from seeded numpy generators, not global state,
    and tensors keep the checkpoint loadable with torch.load(weights_only=True)."""
    checkpoint["rng_states"] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(checkpoint: dict) -> None:
    """The states `save_rng_states` kept; CUDA's only on as many devices as saved them."""
    states = checkpoint.get("rng_states")
    if not states:
        return
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
