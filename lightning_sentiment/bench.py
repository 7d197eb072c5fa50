"""Benchmark: data setup, training speed per model, Lightning overhead, prediction speed.

    python -m lightning_sentiment.bench                       # everything, IMDB from IMDB_ARCHIVE
    python -m lightning_sentiment.bench --models mlp --batches 20 --repeats 2
    python -m lightning_sentiment.bench --smoke               # seconds: what CI runs

Prints one JSON object. Each figure is the median of `--repeats` runs after a
warm-up. Epoch seconds are extrapolated from `--batches` training batches drawn
by the real length-aware sampler to the 25,000 training reviews (`--full-epoch`
times whole epochs instead). Lightning runs with train.py's callbacks and logger.
`lightning_overhead` compares it with a hand-written loop training the same model on
the same batches: on a CPU the two take turns, a step each, in one run, and the figure
is the median of the steps' ratios (`--pairing step`; a shared machine's load drifts
within seconds, and a single step's spike does not move a median); on a GPU, where
timing each step would stop the queue, separate runs alternate (`--pairing run`).
`lightning_floor` is Lightning's fixed cost per step, measured on a near-empty model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lightning_sentiment.memory import configure_cpu_memory

configure_cpu_memory()  # as train.py does, before torch is imported

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from lightning_sentiment.checkpoint_io import AtomicCheckpointIO  # noqa: E402
from lightning_sentiment.data import SentimentDataModule  # noqa: E402
from lightning_sentiment.data.imdb import read_reviews  # noqa: E402
from lightning_sentiment.errors import SentimentError, positive_int  # noqa: E402
from lightning_sentiment.models.lean import LeanLightningModule  # noqa: E402
from lightning_sentiment.pipeline import (  # noqa: E402
    configure_threads,
    instantiate_callbacks,
    instantiate_loggers,
    native_bf16,
)
from lightning_sentiment.predict import SentimentPredictor  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
TRAIN_REVIEWS = 25_000
MODELS = ("lstm", "bilstm", "mlp")
EXPERIMENTS = ("keras_lstm_500", "keras_lstm_80", "keras_bilstm_200", "keras_mlp")


def machine() -> dict:
    info = {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": "cpu",
        "native_bf16": native_bf16(),  # trainer=cpu_bf16 pays off only where true
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def bench_data(archive: str, repeats: int) -> dict:
    """Setup of all 50,000 reviews without cache (cold) and with it (warm)."""
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for times in (cold, warm):
                start = time.perf_counter()
                SentimentDataModule(data_dir=tmp, archive=archive).setup("fit")
                times.append(time.perf_counter() - start)
    return {"cold_s": round(statistics.median(cold), 3), "warm_s": round(statistics.median(warm), 3)}


def compose_model(name: str, archive: str, data_dir: str, overrides: list[str]):
    """A model config (`lstm`) or an experiment (`keras_lstm_500`), as train.py composes it."""
    group = "experiment" if name in EXPERIMENTS else "model"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        # No validation here, so no scheduler that waits for validation metrics.
        cfg = compose(config_name="train", overrides=[f"{group}={name}", "model.scheduler=null", *overrides])
    with open_dict(cfg):
        cfg.data.archive, cfg.data.data_dir = archive, data_dir
        cfg.paths = {"root_dir": data_dir, "data_dir": data_dir, "log_dir": data_dir, "output_dir": data_dir}
    return cfg


class _BatchTimer(pl.Callback):
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


def _train_py_trainer(cfg, *timers: pl.Callback, **limits) -> pl.Trainer:
    """The Trainer as train.py builds it from `cfg.trainer` (precision, profiler, logging
    interval), with the config's callbacks and loggers so their per-step costs count,
    plus the `timers` (a `_BatchTimer` or the interleaved plain loop) and the benchmark's
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


def _lightning_fit(cfg, datamodule, steps: int, *timers: pl.Callback) -> None:
    """One epoch of `steps` batches, Lightning as train.py runs it, the `timers` timing it."""
    pl.seed_everything(0, verbose=False)
    model = instantiate(cfg.model, _recursive_=False)
    trainer = _train_py_trainer(cfg, *timers, limit_train_batches=steps)
    with contextlib.redirect_stdout(sys.stderr):  # the progress bar; stdout is for the JSON
        trainer.fit(model, datamodule=datamodule)  # as train.py: the datamodule's hooks count


def _lightning_seconds(cfg, datamodule, warmup: int, batches: int) -> float:
    timer = _BatchTimer(warmup, batches)
    _lightning_fit(cfg, datamodule, warmup + batches, timer)
    return timer.seconds


class _PlainLoop:
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


def _time_steps(datamodule, warmup: int, batches: int) -> tuple[int, int]:
    """Real (non-padding) and computed time steps of the timed batches: counted in a pass
    of its own, so neither loop's timing includes the counting."""
    real = computed = 0
    for i, batch in zip(range(warmup + batches), datamodule.train_dataloader(), strict=False):
        if i >= warmup:
            real += int((batch[0] != 0).sum())
            computed += batch[0].numel()
    return real, computed


def _plain_seconds(cfg, datamodule, warmup: int, batches: int) -> tuple[float, float]:
    """The plain loop alone: (seconds, seconds waiting for batches)."""
    loop = _PlainLoop(cfg, datamodule)
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

    def __init__(self, loop: _PlainLoop, warmup: int, batches: int) -> None:
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


def _interleaved_steps(cfg, datamodule, warmup: int, batches: int):
    """Both loops in one run, a step of each in turn (CPU). Returns (Lightning's and the plain
    loop's seconds for each timed step, same batches, in order; the plain loop)."""
    loop = _PlainLoop(cfg, datamodule)
    interleaved = _Interleaved(loop, warmup, batches)
    _lightning_fit(cfg, datamodule, warmup + batches, interleaved)  # it times Lightning's steps too
    loop.finish()
    if interleaved.mismatched:
        raise RuntimeError(
            f"the plain loop and Lightning saw different batches at {interleaved.mismatched} steps"
        )
    steps = list(interleaved.timed)
    return [interleaved.light[i] for i in steps], [interleaved.plain[i] for i in steps], loop


def bench_model(name: str, archive: str, data_dir: str, args) -> dict:
    trainer = ["trainer=gpu"] if args.device == "gpu" else ["trainer.accelerator=cpu"]
    overrides = [*trainer, *args.override]  # trainer=gpu: 16-mixed unless overridden
    cfg = compose_model(name, archive, data_dir, overrides)
    configure_threads(cfg.get("threads"))  # as train.py: `--override threads=1` applies
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    available = len(datamodule.train_dataloader()) - args.warmup
    batches = available if args.full_epoch else min(args.batches, available)
    reviews = batches * cfg.data.batch_size
    plain, light, data, ratios, extra = [], [], [], [], []
    for repeat in range(args.repeats):
        if args.pairing == "step":
            light_steps, plain_steps, loop = _interleaved_steps(cfg, datamodule, args.warmup, batches)
            light.append(sum(light_steps))
            seconds, data_s = sum(plain_steps), loop.data_s
            # a step's pair saw the same batch at the same moment: the median is robust
            # to the spikes a shared machine adds to single steps
            ratios += [lig / pla for lig, pla in zip(light_steps, plain_steps, strict=True)]
            extra += [lig - pla for lig, pla in zip(light_steps, plain_steps, strict=True)]
        else:
            # Alternate which loop goes first: on a shared machine the load drifts, and a
            # pair measured back to back sees the same load (hence the median of the ratios).
            if repeat % 2:
                light.append(_lightning_seconds(cfg, datamodule, args.warmup, batches))
            seconds, data_s = _plain_seconds(cfg, datamodule, args.warmup, batches)
            if not repeat % 2:
                light.append(_lightning_seconds(cfg, datamodule, args.warmup, batches))
            ratios.append(light[-1] / seconds)
            extra.append((light[-1] - seconds) / batches)
        plain.append(seconds)
        data.append(data_s / seconds)
    real, computed = _time_steps(datamodule, args.warmup, batches)
    epoch_s = statistics.median(light) * TRAIN_REVIEWS / reviews
    return {
        "epoch_s": round(epoch_s, 2),
        "tokens_per_s": round(real / statistics.median(light)),
        "padding_share": round(1 - real / computed, 4),
        "plain_loop_epoch_s": round(statistics.median(plain) * TRAIN_REVIEWS / reviews, 2),
        "lightning_overhead": round(statistics.median(ratios), 4),  # Lightning / plain, paired
        "pairing": args.pairing,
        "lightning_ms_per_step": round(statistics.median(extra) * 1e3, 3),  # Lightning - plain
        "data_share": round(statistics.median(data), 4),  # of the plain loop's time: batch loading
        "measured_batches": batches,
    }


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


def bench_step_floor(steps: int, root: str) -> dict:
    """Microseconds per step of a near-empty model: Lightning's fixed cost per step.

    A plain loop; a bare Lightning Trainer (no callbacks, logger, progress bar or
    profiler); and the Trainer as train.py builds it (`conf/`'s default callbacks,
    logger and profiler).
    """
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(32, 16, generator=generator), torch.rand(32, generator=generator)) for _ in range(steps)
    ]
    cfg = compose_model("mlp", "unused", root, [])

    def plain() -> float:
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

    def lightning(as_train_py: bool) -> float:
        timer = _BatchTimer(1, steps - 1)
        if as_train_py:
            trainer = _train_py_trainer(cfg, timer, accelerator="cpu")
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

    def us(seconds: list[float]) -> float:
        return round(min(seconds) / (steps - 1) * 1e6, 1)  # min: the machine's noise only adds

    plain_s, bare_s, train_py_s = [], [], []
    for _ in range(2):
        plain_s.append(plain())
        bare_s.append(lightning(as_train_py=False))
        train_py_s.append(lightning(as_train_py=True))
    return {"plain_us": us(plain_s), "lightning_us": us(bare_s), "lightning_train_py_us": us(train_py_s)}


def bench_predict(
    name: str, archive: str, data_dir: str, texts: list[str], device: str, overrides=()
) -> float:
    """Reviews per second through `SentimentPredictor` (tokenization included), untrained weights."""
    cfg = compose_model(name, archive, data_dir, ["trainer.accelerator=cpu", *overrides])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, _recursive_=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=data_dir,
    )
    trainer.fit(model, datamodule=datamodule)
    ckpt = Path(data_dir) / f"{name}.ckpt"
    trainer.save_checkpoint(ckpt)
    predictor = SentimentPredictor(ckpt, device="cuda" if device == "gpu" else "cpu")
    predictor.predict(texts[:256])  # warm-up
    start = time.perf_counter()
    predictor.predict(texts)
    return round(len(texts) / (time.perf_counter() - start), 1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default=os.environ.get("IMDB_ARCHIVE"), help="IMDB .tar.gz")
    parser.add_argument("--models", default=",".join(MODELS + EXPERIMENTS), help="configs, comma-separated")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batches", type=positive_int, default=40, help="timed training batches per model")
    # at least 1: Lightning's timer starts at the end of a batch, so there must be one before
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed batches first (at least 1)")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--full-epoch", action="store_true", help="time whole epochs")
    parser.add_argument(
        "--pairing",
        choices=["step", "run"],
        help="Lightning against the plain loop: a step of each in turn in one run (step, the CPU "
        "default) or separate runs (run, the GPU default: per-step timing would stop its queue)",
    )
    parser.add_argument("--predict-reviews", type=positive_int, default=5000)
    parser.add_argument("--skip", default="", help="parts to skip: data,models,floor,predict")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, for CI")
    parser.add_argument(
        "--override", nargs="*", default=[], help="extra Hydra overrides, e.g. data.batch_size=8"
    )
    args = parser.parse_args(argv)
    if not args.archive:
        parser.error("pass --archive PATH or set IMDB_ARCHIVE")
    unknown = [m for m in args.models.split(",") if m and m not in MODELS + EXPERIMENTS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; use {', '.join(MODELS + EXPERIMENTS)}")
    if args.pairing is None:
        args.pairing = "run" if args.device == "gpu" else "step"
    if args.smoke:
        args.batches, args.warmup, args.repeats, args.predict_reviews = 2, 1, 1, 200
    skip = set(args.skip.split(","))
    result: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory() as data_dir:
        if "data" not in skip:
            result["data"] = bench_data(args.archive, args.repeats if not args.smoke else 1)
        models = [m for m in args.models.split(",") if m]
        if "models" not in skip:
            result["models"] = {m: bench_model(m, args.archive, data_dir, args) for m in models}
            result["lightning_overhead"] = max(r["lightning_overhead"] for r in result["models"].values())
        if "floor" not in skip:  # Lightning's fixed cost per step, whatever the model
            result["lightning_floor"] = bench_step_floor(50 if args.smoke else 2000, data_dir)
        if "predict" not in skip:
            raw = read_reviews(Path(args.archive))
            test = [t for t, is_test in zip(raw.texts, raw.is_test, strict=True) if is_test]
            texts = test[:: max(1, len(test) // args.predict_reviews)][: args.predict_reviews]
            result["predict_per_s"] = {
                m: bench_predict(m, args.archive, data_dir, texts, args.device, args.override)
                for m in models
                if m in MODELS
            }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    try:
        main()
    except SentimentError as err:  # a missing archive, a bad --override: one line
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
