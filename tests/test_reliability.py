"""Interruptions and bad input: nothing lost, nothing corrupt, clear messages."""

import json
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from lightning_sentiment import SentimentError
from lightning_sentiment.data import SentimentDataModule
from lightning_sentiment.models.resume import update_scheduler
from lightning_sentiment.pipeline import train
from tests.conftest import write_tiny_imdb
from tests.helpers import run_train_py

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "model=lstm",
    "model.net.embed_dim=16",
    "model.net.hidden_dim=8",
    "trainer.max_epochs=3",
    "data.vocab_size=64",
    "data.max_len=40",
    "data.batch_size=16",
    "trainer.accelerator=cpu",
    "callbacks.early_stopping.patience=10",
    "logger=csv",
]


def run_train(run_dir: Path, archive: Path, *extra: str):
    where = [
        f"data.archive={archive}",
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={run_dir.parent / 'data'}",
    ]
    return run_train_py(*SMALL, *where, *extra, cwd=ROOT)


def killer(signal_name: str, epoch: int = 1, batch: int = 2) -> list[str]:
    return [
        "+callbacks.signal._target_=tests.helpers.SignalAt",
        f"+callbacks.signal.epoch={epoch}",
        f"+callbacks.signal.batch={batch}",
        f"+callbacks.signal.signal_name={signal_name}",
    ]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, tiny_archive):
    whole = run_train(tmp_path / "whole", tiny_archive)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run_train(tmp_path / "killed", tiny_archive, *killer("SIGKILL"))
    assert killed.returncode == -signal.SIGKILL
    ckpts = tmp_path / "killed" / "checkpoints"
    assert (ckpts / "last.ckpt").exists() and not list(ckpts.glob(".*tmp"))
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 0  # epoch 0 completed
    resumed = run_train(tmp_path / "killed", tiny_archive, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert b["epochs"] == a["epochs"] == 3
    for key in ("val/acc_best", "test/acc", "test/loss", "train/loss"):
        assert b[key] == pytest.approx(a[key], abs=1e-6), key  # CPU: bit-for-bit the same run


@pytest.mark.slow
def test_ctrl_c_stops_gracefully(tmp_path, tiny_archive):
    result = run_train(tmp_path / "run", tiny_archive, *killer("SIGINT", epoch=1, batch=2))
    assert result.returncode != 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["epochs_completed"] == 1
    assert 0 < metrics["val/acc_best"] <= 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_ckpt_path_last_needs_a_run_dir(train_cfg):
    with pytest.raises(SentimentError, match="ckpt_path=last"):
        train(train_cfg(["ckpt_path=last"]))


def test_resume_with_another_vocabulary_is_refused(train_cfg, tmp_path):
    first = train(train_cfg(["model=mlp", "trainer.max_epochs=1"]))
    cfg = train_cfg(["model=mlp", "trainer.max_epochs=2", f"ckpt_path={first['best_model_path']}"])
    with open_dict(cfg):
        cfg.data.vocab_size = 20
        cfg.paths.output_dir = str(tmp_path / "second")
    with pytest.raises(SentimentError, match="another vocabulary"):
        train(cfg)


def test_unrelated_checkpoint_for_evaluation(train_cfg, tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "epoch": 0}, other)
    with pytest.raises(SentimentError, match="another kind"):
        train(train_cfg(["train=false", f"ckpt_path={other}"]))


def test_nan_loss_stops_with_a_message(train_cfg):
    cfg = train_cfg(["model=mlp", "model.optimizer.lr=1e30", "trainer.max_epochs=5"])
    with pytest.raises(Exception) as err:
        train(cfg)
    assert "lower model.optimizer.lr" in str(err.value)


def test_odd_reviews_empty_invalid_utf8_huge(tmp_path):
    base = write_tiny_imdb(tmp_path, per_label=6)
    (base / "train" / "pos" / "100_8.txt").write_bytes(b"")
    (base / "train" / "neg" / "101_2.txt").write_bytes(b"bad \xff\xfe bytes awful")
    (base / "train" / "pos" / "102_9.txt").write_text("great " * 100_000)
    dm = SentimentDataModule(data_dir=str(tmp_path), vocab_size=50, max_len=None, val_size=2)
    dm.setup()
    assert dm.stats["invalid_utf8_reviews"] == 1
    assert (
        dm.stats["splits"]["train"]["tokens_per_review"]["max"] == 100_000
        or dm.stats["splits"]["val"]["tokens_per_review"]["max"] == 100_000
    )
    lengths = dm.corpus.lengths
    assert lengths.min() == 0 and lengths.max() == 100_000
    from lightning_sentiment.models import LSTMClassifier, MultiHotMLP

    batch = next(iter(dm.train_dataloader()))[0]
    for net in (LSTMClassifier(50, 4, 4), MultiHotMLP(50, hidden_dims=[4])):
        assert torch.isfinite(net(batch)).all()


def _prepare(data_dir: str, archive: str) -> int:
    dm = SentimentDataModule(data_dir=data_dir, archive=archive)
    dm.prepare_data()
    return len(dm.corpus)


def test_concurrent_cache_builds_leave_a_valid_cache(tmp_path, tiny_archive):
    import multiprocessing as mp

    from lightning_sentiment.data.corpus import load_corpus

    with mp.get_context("spawn").Pool(2) as pool:
        sizes = pool.starmap(_prepare, [(str(tmp_path), str(tiny_archive))] * 2)
    assert sizes == [160, 160]
    (cache,) = (tmp_path / "cache").glob("*.npz")  # one cache file, no temporary leftovers
    assert not list((tmp_path / "cache").glob(".*")) and len(load_corpus(cache)) == 160


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
