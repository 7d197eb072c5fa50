"""Callbacks of `conf/callbacks/`: Lightning's, minus per-step costs they do not need."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping as _LightningEarlyStopping
from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint

from lightning_sentiment.atomic import atomic_path
from lightning_sentiment.errors import check_count
from lightning_sentiment.memory import resident_bytes, trim_heap


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
    """Lightning's `EarlyStopping`, with `state_key` computed once, keeping the configured
    `patience` when a run resumes.

    Lightning restores `patience` from the checkpoint, so `ckpt_path=...
    callbacks.early_stopping.patience=5` would silently go on with the old one; the
    count of epochs without improvement (`wait_count`) and the best score are restored.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lightning takes any patience; a negative one would stop at the first dip
        check_count("callbacks.early_stopping.patience", self.patience, minimum=0)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({**state_dict, "patience": self.patience})


class ModelCheckpoint(_CachedStateKey, _LightningModelCheckpoint):
    """Lightning's `ModelCheckpoint`, with `state_key` computed once, skipping its
    per-batch hook when it only saves at epoch ends (no `every_n_train_steps` and no
    `train_time_interval`, as in our configs).

    That hook then decides not to save every step, after reading the trainer's state
    and a clock: ~30 us a step per checkpoint callback, 60 us for train.py's two,
    which shows next to a Keras-sized model's 10-20 ms CPU step.

    A run resumed into another folder (`train.py`'s default: every run gets its own)
    carries its best checkpoints over, copied into its own folder, instead of
    Lightning's forgetting their scores: else the first epoch after the resume counts as
    the best, and the test scores it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir, best = state_dict.get("dirpath"), state_dict.get("best_model_path") or ""
        if not self.dirpath or not old_dir or os.path.realpath(old_dir) == os.path.realpath(self.dirpath):
            return super().load_state_dict(state_dict)
        if self.monitor is None:  # `last.ckpt`: nothing to carry, this run writes its own
            fresh = dict.fromkeys(("best_model_path", "kth_best_model_path", "last_model_path"), "")
            fresh.update(best_k_models={}, dirpath=self.dirpath)
            return super().load_state_dict({**state_dict, **fresh})
        if state_dict.get("monitor") != self.monitor or not os.path.isfile(best):
            return super().load_state_dict(state_dict)  # Lightning's: warns, forgets the scores
        kept = state_dict.get("best_k_models") or {}  # path -> score
        moved = {}  # old path -> its copy here; the old run's folder is left untouched
        for path in {*kept, best}:
            if os.path.isfile(path):
                moved[path] = os.path.join(self.dirpath, os.path.basename(path))
                with atomic_path(moved[path]) as tmp:
                    shutil.copyfile(path, tmp)
        kth = state_dict.get("kth_best_model_path", "")
        state = dict(
            state_dict,
            dirpath=self.dirpath,
            best_model_path=moved.get(best, best),
            best_k_models={moved[p]: score for p, score in kept.items() if p in moved},
            kth_best_model_path=moved.get(kth, kth),
            last_model_path="",  # this run writes its own
        )
        return super().load_state_dict(state)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class HeapTrim(_CachedStateKey, pl.Callback):
    """Hands glibc's free heap pages back to the system before a long CPU batch.

    A short batch's activations are all under the mmap threshold (`memory.py`), so they
    come from the heap, which keeps their pages when they are freed (~700 MB after a
    few dozen `bilstm` steps, nearly all free). A long batch's big activations are mapped
    apart, on top of those kept pages: they set the run's peak. So before each batch of
    at least `share` of the largest one so far (its token tensor's size; each stage
    apart), if the process has grown by `min_release_mb` since the last trim, the free
    pages go back (`memory.trim_heap`). Steps after a trim fault their heap in again,
    which only long batches pay, and only when the heap has grown: a model whose
    batches are all alike trims once.
    """

    def __init__(self, share: float = 0.5, min_release_mb: float = 256) -> None:
        if not 0 <= share <= 1:
            raise ValueError(f"callbacks.heap_trim.share must be in [0, 1], got {share}")
        self.share, self.min_release = share, min_release_mb * 2**20
        self._largest: dict[str, int] = {}
        self._after_trim = 0  # resident bytes right after the last trim
        self.trims = 0

    def _before(self, stage: str, batch: Any) -> None:
        tokens = batch[0] if isinstance(batch, (list, tuple)) else batch
        if not isinstance(tokens, torch.Tensor) or tokens.device.type != "cpu":
            return  # a GPU's activations are not in this heap
        size = tokens.numel()
        largest = self._largest[stage] = max(self._largest.get(stage, 0), size)
        if size < self.share * largest or resident_bytes() - self._after_trim < self.min_release:
            return
        if trim_heap():
            self.trims += 1
            self._after_trim = resident_bytes()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._before("train", batch)

    def on_validation_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._before("validate", batch)

    def on_test_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._before("test", batch)
