"""The files a run leaves in its directory besides checkpoints: vocabulary, data stats,
metrics, curves, and the TensorBoard HPARAMS tab."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from pytorch_lightning.utilities.model_summary import ModelSummary

from lightning_sentiment.atomic import atomic_write_json, atomic_write_text
from lightning_sentiment.reports import plot_curves

log = logging.getLogger(__name__)
FINAL_METRICS = ("test/acc", "test/loss", "val/acc_best")


def write_run_files(
    cfg: DictConfig, datamodule, model, loggers: list[Logger], metrics: dict, output_dir: Path, curves: bool
) -> None:
    """Every file at once, each written atomically; `curves`: plot the history too."""
    if curves and metrics["history"]:  # tested or not (test=false)
        plot_curves(metrics["history"], output_dir / "curves.png")
    if datamodule.vocab is not None:
        atomic_write_text(output_dir / "vocab.txt", "\n".join(datamodule.vocab.words) + "\n")
        atomic_write_json(output_dir / "data_stats.json", datamodule.stats)
    _log_hparams(cfg, model, loggers, metrics)
    atomic_write_json(output_dir / "metrics.json", metrics)
    log.info("Metrics: %s", metrics)


def _log_hparams(cfg: DictConfig, model, loggers: list[Logger], metrics: dict) -> None:
    """HPARAMS tab: the run's settings beside its final metrics; the model summary as text."""
    params = {
        f"{group}/{k}": v if isinstance(v, int | float | str | bool) else str(v)
        for group in ("data", "model")
        for k, v in _flatten(OmegaConf.to_container(cfg[group], resolve=True)).items()
        if not k.endswith("_target_")
    }
    final = {k: v for k, v in metrics.items() if k in FINAL_METRICS}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, final)
            logger.experiment.add_text("model/summary", f"```\n{ModelSummary(model, max_depth=2)}\n```")
            logger.experiment.flush()


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
