"""Resuming a run: into another folder, with changed or unchanged optimizer, scheduler and
early-stopping settings."""

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from lightning_sentiment import SentimentError
from lightning_sentiment.models.resume import update_scheduler
from lightning_sentiment.pipeline import train


def _last_ckpt(metrics: dict) -> Path:
    return Path(metrics["best_model_path"]).with_name("last.ckpt")


def _resume_edited(train_cfg, tmp_path, edit, overrides, first_overrides=()):
    """Train `mlp` for 2 epochs (with `first_overrides`), let `edit(checkpoint,
    first_metrics)` change its `last.ckpt`, then resume it with `overrides` into a new
    folder (train.py's default). Returns both runs' metrics."""
    first = train(train_cfg(["model=mlp", "trainer.max_epochs=2", "logger=none", *first_overrides]))
    last = _last_ckpt(first)
    ckpt = torch.load(last, weights_only=False)
    edit(ckpt, first)
    torch.save(ckpt, last)
    cfg = train_cfg(["model=mlp", "logger=none", *overrides, f"ckpt_path={last}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "second")
    return first, train(cfg)


def test_resume_into_another_folder_keeps_the_best_checkpoint(train_cfg, tmp_path):
    """train.py gives every run its own folder. A run resumed there carries over the
    best score and a copy of the best checkpoint (Lightning would forget both), so
    val/acc_best and the test still come from the best epoch, not the first resumed one."""

    def unbeatable_best(ckpt, first):
        # Make the first run's best unbeatable (1.0), so only a carried-over best can win.
        best = first["best_model_path"]
        monitored = [s for s in ckpt["callbacks"].values() if s.get("best_model_path") == best]
        assert len(monitored) == 1
        monitored[0]["best_model_score"] = torch.tensor(1.0)
        monitored[0]["best_k_models"] = {best: torch.tensor(1.0)}
        best_epoch = int(Path(best).stem.split("_")[1]) + 1  # epoch_000.ckpt: epoch 1
        next(row for row in ckpt["history"] if row["epoch"] == best_epoch)["val/acc"] = 1.0

    first, second = _resume_edited(train_cfg, tmp_path, unbeatable_best, ["trainer.max_epochs=3"])
    old_best = Path(first["best_model_path"])
    copy = tmp_path / "second" / "checkpoints" / old_best.name
    assert second["epochs"] == 3 and second["val/acc_best"] == 1.0
    assert Path(second["best_model_path"]) == copy and copy.read_bytes() == old_best.read_bytes()
    assert sorted(p.name for p in copy.parent.iterdir()) == sorted([old_best.name, "last.ckpt"])
    assert old_best.exists()  # the first run's folder is left as it was


def test_resume_keeps_the_configured_early_stopping_patience(train_cfg, tmp_path):
    """Lightning restores `patience` from the checkpoint; a resume that asks for another
    one gets it, with the count of epochs without improvement carried over."""

    def one_bad_epoch_patience_1(ckpt, first):
        # An unbeatable best, one epoch already without improvement, patience 1: resumed as
        # saved, the run would stop after epoch 3; with patience 3 it stops after epoch 4.
        (stopper,) = [s for s in ckpt["callbacks"].values() if "wait_count" in s]
        stopper.update(best_score=torch.tensor(1.0), wait_count=1, patience=1)

    overrides = ["trainer.max_epochs=6", "callbacks.early_stopping.patience=3"]
    _, second = _resume_edited(train_cfg, tmp_path, one_bad_epoch_patience_1, overrides)
    assert second["epochs"] == 4


def test_resume_applies_a_changed_learning_rate(train_cfg, tmp_path):
    """Lightning restores the optimizer's learning rate from the checkpoint; a resume that
    asks for another one (fine-tuning at a lower rate) trains at it."""
    _, second = _resume_edited(
        train_cfg, tmp_path, lambda ckpt, first: None, ["trainer.max_epochs=3", "model.optimizer.lr=0.0002"]
    )
    last = torch.load(_last_ckpt(second), weights_only=False)
    assert second["epochs"] == 3
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == 0.0002


def test_resume_with_the_same_settings_keeps_a_cut_learning_rate(train_cfg, tmp_path):
    """Only settings that differ from the checkpoint's are applied: a rate the schedule
    has cut (here: edited into the checkpoint) stays cut when the resume repeats the config."""

    def cut_rate(ckpt, first):
        ckpt["optimizer_states"][0]["param_groups"][0]["lr"] = 0.0003

    _, second = _resume_edited(train_cfg, tmp_path, cut_rate, ["trainer.max_epochs=3"])
    last = torch.load(_last_ckpt(second), weights_only=False)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == 0.0003


def test_resume_applies_a_changed_plateau_patience(train_cfg, tmp_path):
    """The scheduler's settings too: the plateau rule's patience given on resume applies."""
    plateau = [
        "model.optimizer.lr=0.001",
        "+model.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau",
        "+model.scheduler._partial_=true",
        "+model.scheduler.mode=max",
        "+model.scheduler.monitor=val/acc",
    ]
    overrides = ["trainer.max_epochs=3", *plateau, "+model.scheduler.patience=4"]
    first_overrides = [*plateau, "+model.scheduler.patience=1"]
    _, second = _resume_edited(train_cfg, tmp_path, lambda ckpt, first: None, overrides, first_overrides)
    resumed = torch.load(_last_ckpt(second), weights_only=False)
    assert resumed["lr_schedulers"][0]["patience"] == 4


def test_a_resumed_scheduler_takes_new_settings_or_refuses_in_one_line():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=1)
    plateau.num_bad_epochs = 1
    update_scheduler(plateau, new_lr=True, changes={"min_lr": 0.001, "factor": 0.5})
    assert (plateau.min_lrs, plateau.factor, plateau.num_bad_epochs) == ([0.001], 0.5, 0)
    plateau.step(0.8)  # best 0.8, as "max"
    update_scheduler(plateau, new_lr=False, changes={"mode": "min"})
    assert (plateau.mode, plateau.best) == ("min", float("inf"))  # 0.8 meant the opposite
    with pytest.raises(SentimentError, match="model.scheduler.warmup cannot change on resume"):
        update_scheduler(plateau, new_lr=False, changes={"warmup": 3})
