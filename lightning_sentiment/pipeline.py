"""`train(cfg) -> metrics`: the whole run as a short, straight line of Hydra instantiations."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger

from lightning_sentiment.checkpointing import AtomicCheckpointIO, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return [instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]


def instantiate_callbacks(cfg: DictConfig | None, has_logger: bool) -> list[Callback]:
    callbacks = [instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]
    if not has_logger:  # Lightning refuses a LearningRateMonitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def train(cfg: DictConfig) -> dict:
    """Fit (if `cfg.train`), then test the best checkpoint (if `cfg.test`); returns metrics."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _recursive_=False)
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )

    metrics: dict = {"status": "completed"}
    if cfg.get("train", True):
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics["fit_seconds"] = round(time.perf_counter() - start, 2)
        metrics["epochs"] = trainer.current_epoch
        metrics.update(_scalars(trainer.callback_metrics))
    best = _best_checkpoint(trainer)
    if cfg.get("test", True):
        ckpt = best or (None if cfg.get("train", True) else cfg.get("ckpt_path"))
        if ckpt is None:
            log.warning("No best checkpoint (checkpointing off): testing the last weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt)
        metrics.update(_scalars(trainer.callback_metrics, prefix="test/"))
    metrics["best_model_path"] = best

    if datamodule.vocab is not None:
        atomic_write_text(output_dir / "vocab.txt", "\n".join(datamodule.vocab.words) + "\n")
    atomic_write_json(output_dir / "metrics.json", metrics)
    log.info("Metrics: %s", metrics)
    return metrics


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    ckpt = trainer.checkpoint_callback
    if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
        return ckpt.best_model_path
    return None


def _scalars(values: dict, prefix: str = "") -> dict:
    return {k: round(float(v), 6) for k, v in values.items() if k.startswith(prefix)}
