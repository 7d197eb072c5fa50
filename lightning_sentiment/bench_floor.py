"""Lightning's fixed cost per step (`lightning_floor` in `python -m lightning_sentiment.bench`):
microseconds a step of a near-empty model under a plain loop, a bare Trainer, and the
Trainer as train.py builds it."""

from __future__ import annotations

import contextlib
import sys
import time

import pytorch_lightning as pl
import torch

from lightning_sentiment.bench_loops import BatchTimer, train_py_trainer
from lightning_sentiment.models.lean import LeanLightningModule

Batches = list[tuple[torch.Tensor, torch.Tensor]]


class _Tiny(LeanLightningModule):
    """A 16 -> 1 linear model: its steps are almost all loop machinery (with the hook
    bookkeeping fast path that SentimentClassifier has)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), y)

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val/acc", 1 - self.training_step(batch, batch_idx))  # what the callbacks monitor

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), fused=True)


def _plain_seconds(batches: Batches) -> float:
    model = _Tiny()
    optimizer = model.configure_optimizers()
    for i, batch in enumerate(batches):
        if i == 1:  # from the end of the first step, as the Lightning timer
            start = time.perf_counter()
        loss = model.training_step(batch, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def _lightning_seconds(batches: Batches, root: str, cfg, as_train_py: bool) -> float:
    timer = BatchTimer(1, len(batches) - 1)
    if as_train_py:
        trainer = train_py_trainer(cfg, timer, accelerator="cpu")
    else:
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_val_batches=1,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            default_root_dir=root,
        )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    with contextlib.redirect_stdout(sys.stderr):
        trainer.fit(_Tiny(), train_dataloaders=loader, val_dataloaders=loader)
    return timer.seconds


def bench_step_floor(steps: int, root: str, cfg) -> dict:
    """Microseconds per step of a near-empty model: Lightning's fixed cost per step.

    A plain loop; a bare Lightning Trainer (no callbacks, logger, progress bar or
    profiler); and the Trainer as train.py builds it (`conf/`'s default callbacks,
    logger and profiler, from `cfg`: a composed config, the model part unused).
    """
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(32, 16, generator=generator), torch.rand(32, generator=generator)) for _ in range(steps)
    ]

    def us(seconds: list[float]) -> float:
        return round(min(seconds) / (steps - 1) * 1e6, 1)  # min: the machine's noise only adds

    plain_s, bare_s, train_py_s = [], [], []
    for _ in range(2):
        plain_s.append(_plain_seconds(batches))
        bare_s.append(_lightning_seconds(batches, root, cfg, as_train_py=False))
        train_py_s.append(_lightning_seconds(batches, root, cfg, as_train_py=True))
    return {"plain_us": us(plain_s), "lightning_us": us(bare_s), "lightning_train_py_us": us(train_py_s)}
