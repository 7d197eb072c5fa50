"""The training loops the benchmark times (`python -m lightning_sentiment.bench`).

Lightning as train.py runs it (`train_py_trainer`), a hand-written loop training the same
model on the same batches (`PlainLoop`), the two timed in separate runs or a step of each
in turn (`interleaved_steps`). Lightning's fixed cost per step on a near-empty model is
`bench_floor.py`'s.
"""

from __future__ import annotations

import contextlib
import sys
import time

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from lightning_sentiment.checkpoint_io import AtomicCheckpointIO
from lightning_sentiment.pipeline import instantiate_callbacks, instantiate_loggers


class BatchTimer(pl.Callback):
    """Wall time of `batches` training steps after `warmup`: from the end of one batch to
    the end of another, so every callback's per-step hooks count once per step."""

    def __init__(self, warmup: int, batches: int) -> None:
        self.first, self.last = warmup - 1, warmup + batches - 1
        self.start, self.seconds = None, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx in (self.first, self.last):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()  # queued kernels belong to the timed steps
            if batch_idx == self.first:
                self.start = time.perf_counter()
            else:
                self.seconds = time.perf_counter() - self.start


def train_py_trainer(cfg, *timers: pl.Callback, **limits) -> pl.Trainer:
    """The Trainer as train.py builds it from `cfg.trainer` (precision, profiler, logging
    interval), with the config's callbacks and loggers so their per-step costs count,
    plus the `timers` (a `BatchTimer` or the interleaved plain loop) and the benchmark's
    `limits` (one epoch of so many batches)."""
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    return instantiate(
        cfg.trainer,
        callbacks=[*callbacks, *timers],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        devices=1,
        max_epochs=1,
        limit_val_batches=1,  # the monitored val/acc exists for the checkpoint callback
        num_sanity_val_steps=0,
        enable_model_summary=False,
        **limits,
    )


def lightning_fit(cfg, datamodule, steps: int, *timers: pl.Callback) -> None:
    """One epoch of `steps` batches, Lightning as train.py runs it, the `timers` timing it."""
    pl.seed_everything(0, verbose=False)
    model = instantiate(cfg.model, _recursive_=False)
    trainer = train_py_trainer(cfg, *timers, limit_train_batches=steps)
    with contextlib.redirect_stdout(sys.stderr):  # the progress bar; stdout is for the JSON
        trainer.fit(model, datamodule=datamodule)  # as train.py: the datamodule's hooks count


def lightning_seconds(cfg, datamodule, warmup: int, batches: int) -> float:
    timer = BatchTimer(warmup, batches)
    lightning_fit(cfg, datamodule, warmup + batches, timer)
    return timer.seconds


class PlainLoop:
    """The same model (same seed) trained by a hand-written loop on the same batches, from
    its own loader. Mixed precision as Lightning does it: autocast and, for fp16, a
    gradient scaler. Sums the time its counted steps waited for batches."""

    def __init__(self, cfg, datamodule) -> None:
        pl.seed_everything(0, verbose=False)
        self.device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
        self.model = instantiate(cfg.model, _recursive_=False).to(self.device)
        self.optimizer = self.model.configure_optimizers()["optimizer"]
        precision = str(cfg.trainer.precision)
        self.dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.clip = cfg.trainer.get("gradient_clip_val")  # as Lightning clips: the norm, unscaled
        self.data_s = 0.0
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.loader = iter(datamodule.train_dataloader())

    def step(self, counted: bool) -> list[torch.Tensor]:
        """One training step on the next batch; returns the batch."""
        fetch = time.perf_counter()
        batch = [t.to(self.device, non_blocking=True) for t in next(self.loader)]
        if counted:
            self.data_s += time.perf_counter() - fetch
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss, probs, labels = self.model.model_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():  # what any training loop tracks: loss and accuracy sums
            self.loss_sum += loss * labels.numel()
            self.correct += ((probs >= 0.5) == (labels >= 0.5)).sum()
        return batch

    def finish(self) -> None:
        float(self.loss_sum), int(self.correct)  # the epoch's figures reach the host, as Lightning's do


def count_steps(cfg, datamodule, warmup: int, batches: int) -> tuple[int, int]:
    """Real (non-padding) and computed time steps of the timed batches, counted in a pass of
    its own so neither loop's timing includes it. An LSTM's computed steps are the grid its
    layers read, taken from a training-mode forward of the model: reading reviews in
    segments (`chunk`) pads each review's last segment, and random offsets its first one
    too, on top of the batch's own padding; `length_groups` reads most of that padding
    no more. Other models: the batch's slots."""
    net = instantiate(cfg.model, _recursive_=False).net.train()
    layers = getattr(net, "_layers", None)  # LSTMClassifier: (h (S, T, E), lengths) -> states
    grids: list[int] = []
    if layers is not None:

        def read_grid(h: torch.Tensor, lengths: torch.Tensor):
            # every layer and direction reads S * T steps; in length groups, a call a group
            grids.append(h.shape[0] * h.shape[1])
            return layers(h, lengths)

        net._layers = read_grid
    real = computed = 0
    with torch.no_grad():
        for i, batch in zip(range(warmup + batches), datamodule.train_dataloader(), strict=False):
            if i < warmup:
                continue
            tokens, grids[:] = batch[0], []
            if layers is not None:
                net(tokens)
            real += int((tokens != 0).sum())
            computed += sum(grids) if grids else tokens.numel()  # training: one reading
    return real, computed


def plain_seconds(cfg, datamodule, warmup: int, batches: int) -> tuple[float, float]:
    """The plain loop alone: (seconds, seconds waiting for batches)."""
    loop = PlainLoop(cfg, datamodule)
    for i in range(warmup + batches):
        if i == warmup:
            if loop.device.type == "cuda":
                torch.cuda.synchronize()  # the warm-up's queued kernels are not timed
            start = time.perf_counter()
        loop.step(counted=i >= warmup)
    loop.finish()
    return time.perf_counter() - start, loop.data_s


class _Interleaved(pl.Callback):
    """One plain-loop step between each two of Lightning's, so the two loops are timed step
    by step under the same load (a shared machine's load drifts within seconds; separate
    runs of the two loops drift apart). Each loop fetches its own batch right before its
    step; the plain loop trains batch i + 1 at the end of Lightning's batch i, so each
    loop's step follows one of the other's. Lightning's step i runs from this hook's
    return at batch i - 1 to its call at batch i (every other hook and callback
    included). Both loaders yield the same batches in the same order: checked."""

    def __init__(self, loop: PlainLoop, warmup: int, batches: int) -> None:
        self.loop, self.timed = loop, range(warmup, warmup + batches)
        self.light: dict[int, float] = {}  # batch index -> seconds
        self.plain: dict[int, float] = {}
        self.pending: list[torch.Tensor] | None = None
        self.returned = 0.0
        self.mismatched = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.pending = self.loop.step(counted=False)  # batch 0, before Lightning's
        self.returned = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        called = time.perf_counter()
        if batch_idx in self.timed:
            self.light[batch_idx] = called - self.returned
        self.mismatched += not all(torch.equal(a, b) for a, b in zip(self.pending, batch, strict=True))
        if batch_idx + 1 <= self.timed[-1]:
            start = time.perf_counter()
            self.pending = self.loop.step(counted=batch_idx + 1 in self.timed)
            if batch_idx + 1 in self.timed:
                self.plain[batch_idx + 1] = time.perf_counter() - start
        self.returned = time.perf_counter()


def interleaved_steps(cfg, datamodule, warmup: int, batches: int):
    """Both loops in one run, a step of each in turn (CPU). Returns (Lightning's and the plain
    loop's seconds for each timed step, same batches, in order; the plain loop)."""
    loop = PlainLoop(cfg, datamodule)
    interleaved = _Interleaved(loop, warmup, batches)
    lightning_fit(cfg, datamodule, warmup + batches, interleaved)  # it times Lightning's steps too
    loop.finish()
    if interleaved.mismatched:
        raise RuntimeError(
            f"the plain loop and Lightning saw different batches at {interleaved.mismatched} steps"
        )
    steps = list(interleaved.timed)
    return [interleaved.light[i] for i in steps], [interleaved.plain[i] for i in steps], loop
