"""Interruptions and bad input: nothing lost, nothing corrupt, clear messages."""

import json
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from lightning_sentiment import SentimentError
from lightning_sentiment.data import SentimentDataModule
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
