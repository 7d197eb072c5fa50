"""Callbacks of `conf/callbacks/`: Lightning's, minus per-step costs they do not need."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping as _LightningEarlyStopping
from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint


class _CachedStateKey:
    """`state_key` computed once. Lightning formats it (a repr of the callback's
    settings) for each of its hook calls, ~6 a step, whether or not the callback
    implements the hook: ~3 us each. The settings it reads are fixed at construction."""

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            key = self.__dict__["_state_key"] = super().state_key
        return key


class EarlyStopping(_CachedStateKey, _LightningEarlyStopping):
    """Lightning's `EarlyStopping`, with `state_key` computed once."""


class ModelCheckpoint(_CachedStateKey, _LightningModelCheckpoint):
    """Lightning's `ModelCheckpoint`, with `state_key` computed once, skipping its
    per-batch hook when it only saves at epoch ends (no `every_n_train_steps` and no
    `train_time_interval`, as in our configs).

    That hook then decides not to save every step, after reading the trainer's state
    and a clock: ~30 us a step per checkpoint callback, 60 us for train.py's two,
    which shows next to a Keras-sized model's 10-20 ms CPU step.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
