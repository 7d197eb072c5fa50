"""`train(cfg) -> metrics`: the whole run as a short, straight line of Hydra instantiations."""

from __future__ import annotations

import logging
import os
import statistics
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger

from lightning_sentiment.atomic import atomic_write_json
from lightning_sentiment.checkpoint_io import AtomicCheckpointIO
from lightning_sentiment.data import SentimentDataModule
from lightning_sentiment.errors import SentimentError, SettingError, check_count, settings_of
from lightning_sentiment.hardware import (
    check_accelerator,
    configure_threads,
    relaunch_ddp_children_as_this_job,
    warn_if_emulated_bf16,
)
from lightning_sentiment.memory import configure_cpu_memory
from lightning_sentiment.models import SentimentClassifier
from lightning_sentiment.reports import write_run_reports
from lightning_sentiment.run_files import write_run_files
from lightning_sentiment.saved_runs import check_resumable, from_checkpoint, resolve_ckpt_path

log = logging.getLogger(__name__)
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")

# Lightning 2.6's batch flattening builds torch's LeafSpec, which torch 2.13 deprecates:
# a FutureWarning in every run that only Lightning can act on.
warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)


class _NoAdvertisement(logging.Filter):
    """Lightning 2.6 advertises its cloud logger at every Trainer's start: a line in every
    run that says nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NoAdvertisement())


def _instantiate_group(group: str, cfg: DictConfig | None) -> list:
    """Each configured entry of a dict-like group (`logger`, `callbacks`); a bad setting
    fails in one line naming the entry."""
    built = []
    for name, entry in (cfg or {}).items():
        if entry and "_target_" in entry:
            with settings_of(f"{group}.{name}"):
                built.append(instantiate(entry))
    return built


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _instantiate_group("logger", cfg)


def instantiate_callbacks(cfg: DictConfig | None, has_logger: bool) -> list[Callback]:
    callbacks = _instantiate_group("callbacks", cfg)
    if not has_logger:  # Lightning refuses a LearningRateMonitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def without_validation(cfg: DictConfig, callbacks: list[Callback]) -> list[Callback]:
    """A final fit on every training review (data.val_size=0): the callbacks that watch
    validation go; a scheduler that watches it cannot, so the run stops in one line."""
    monitor = str((cfg.model.get("scheduler") or {}).get("monitor") or "")
    if monitor.startswith("val/"):
        raise SentimentError(
            f"model.scheduler watches {monitor}, and data.val_size=0 leaves no validation: set "
            "model.scheduler=null or a fixed schedule (README, A final fit on every training review)"
        )
    watching = [c for c in callbacks if str(getattr(c, "monitor", None) or "").startswith("val/")]
    if watching:
        names = ", ".join(type(c).__name__ for c in watching)
        log.info("No validation split (data.val_size=0): %s off; the test scores the last epoch", names)
    return [c for c in callbacks if c not in watching]


def train(cfg: DictConfig) -> dict:
    """Fit (if `cfg.train`), then test the best checkpoint (if `cfg.test`); returns metrics."""
    env_before = {k: os.environ.get(k) for k in DDP_ENV}
    try:
        return _train(cfg)
    finally:
        # A sweep runs its next job in this process: a DDP job must leave neither its
        # process group nor Lightning's LOCAL_RANK & co. behind, or the next job would
        # take them for an external launcher and never start its own processes.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _train(cfg: DictConfig) -> dict:
    _prepare_process(cfg)
    fitting = cfg.get("train", True)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    datamodule, model = _data_and_model(cfg, ckpt_path, fitting)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = _trainer(cfg, datamodule, loggers, fitting)

    metrics: dict = {"status": "completed"}
    if fitting:
        metrics |= _fit(trainer, model, datamodule, ckpt_path, output_dir)
    best = _best_checkpoint(trainer)
    metrics |= _history_metrics(model)
    if cfg.get("test", True):
        tested = best or (None if fitting else ckpt_path)
        metrics |= _test(trainer, model, datamodule, tested, output_dir)
    metrics["best_model_path"] = best
    if trainer.is_global_zero:  # one set of files, whatever the number of processes
        write_run_files(cfg, datamodule, model, loggers, metrics, output_dir, curves=not trainer.fast_dev_run)
    return metrics


def _prepare_process(cfg: DictConfig) -> None:
    configure_cpu_memory()  # again: a sweep's worker processes do not run train.py
    configure_threads(cfg.get("threads"))
    seed = cfg.get("seed")
    if seed is not None:  # numpy's seed range, which Lightning enforces with a ValueError
        check_count("seed", seed, minimum=0, maximum=2**32 - 1, also=", or null for no seeding")
        pl.seed_everything(seed, workers=True)


def _data_and_model(
    cfg: DictConfig, ckpt_path: str | None, fitting: bool
) -> tuple[SentimentDataModule, SentimentClassifier]:
    """From the config; for evaluation alone (train=false), from the checkpoint."""
    if not fitting and not ckpt_path:  # else it would test untrained weights
        raise SettingError("train=false evaluates a saved model: pass ckpt_path=PATH to its .ckpt file")
    if not fitting:
        return from_checkpoint(cfg, ckpt_path)
    with settings_of("data"):
        datamodule = instantiate(cfg.data)
    with settings_of("model"):
        model = instantiate(cfg.model, _recursive_=False)
    if ckpt_path:
        check_resumable(datamodule, ckpt_path)
        model.resuming = True
    return datamodule, model


def _trainer(cfg: DictConfig, datamodule, loggers: list[Logger], fitting: bool) -> pl.Trainer:
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    no_validation = fitting and not datamodule.has_validation()
    if no_validation:
        callbacks = without_validation(cfg, callbacks)
    relaunch_ddp_children_as_this_job()
    check_accelerator(cfg.trainer.get("accelerator"))
    with settings_of("trainer"):
        trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
            # no validation loop at all: not even Lightning's warning about an empty loader
            **({"limit_val_batches": 0} if no_validation else {}),
        )
    warn_if_emulated_bf16(trainer)
    return trainer


def _history_metrics(model: SentimentClassifier) -> dict:
    """Per-epoch train/val figures (curves.png) and the median epoch time."""
    metrics: dict = {"history": sorted_history(model)}
    if seconds := [row["seconds"] for row in metrics["history"] if "seconds" in row]:
        metrics["epoch_seconds"] = round(statistics.median(seconds), 3)  # first epoch's warm-up aside
    return metrics


def _fit(trainer: pl.Trainer, model, datamodule, ckpt_path: str | None, output_dir: Path) -> dict:
    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into sys.exit(1)
        if trainer.interrupted and trainer.is_global_zero:
            _save_interrupted(trainer, start, output_dir)
        raise
    return _fit_metrics(trainer, start)


def _test(trainer: pl.Trainer, model, datamodule, ckpt: str | None, output_dir: Path) -> dict:
    """Test metrics of `ckpt` (the best one); the reports on rank 0."""
    if ckpt is None:
        log.warning("No best checkpoint (checkpointing off): testing the last weights")
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt)
    metrics = _scalars(trainer.callback_metrics, prefix="test/")
    predictions = model.test_predictions()  # on all ranks: it gathers under DDP
    if trainer.is_global_zero and not trainer.fast_dev_run:
        metrics |= write_run_reports(trainer, predictions, datamodule, output_dir)
    return metrics


def _fit_metrics(trainer: pl.Trainer, start: float) -> dict:
    metrics = {"fit_seconds": round(time.perf_counter() - start, 2), "epochs": trainer.current_epoch}
    return metrics | _scalars(trainer.callback_metrics)


def _save_interrupted(trainer: pl.Trainer, start: float, output_dir: Path) -> None:
    """Ctrl-C: record what the completed epochs reached; last.ckpt holds their weights."""
    metrics = _fit_metrics(trainer, start) | {
        "status": "interrupted",
        "best_model_path": _best_checkpoint(trainer),
    }
    metrics.pop("epochs")
    metrics["epochs_completed"] = trainer.fit_loop.epoch_progress.current.completed
    atomic_write_json(output_dir / "metrics.json", metrics)
    log.warning("Interrupted: metrics of the completed epochs in %s", output_dir / "metrics.json")


def sorted_history(model: SentimentClassifier) -> list[dict]:
    return [model.history[epoch] for epoch in sorted(model.history)]


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    """The monitored checkpoint callback's best file (not last.ckpt's callback)."""
    callbacks = trainer.checkpoint_callbacks
    monitored = [c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor] or callbacks
    return next((c.best_model_path for c in monitored if c.best_model_path), None)


def _scalars(values: dict, prefix: str = "") -> dict:
    return {k: round(float(v), 6) for k, v in values.items() if k.startswith(prefix)}
