"""data.val_size=0: a final fit on every training review, no validation split."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_sentiment.data.splits import split_indices
from lightning_sentiment.errors import SentimentError
from lightning_sentiment.pipeline import train
from tests.conftest import PER_LABEL
from tests.helpers import make_dm


def test_no_validation_split_keeps_every_training_review():
    labels = np.array([0, 1] * 50)
    is_test = np.arange(100) >= 60
    for split_by_movie in (False, True):
        movies = np.arange(100) // 5 if split_by_movie else None
        index = split_indices(labels, is_test, "official", 0, 0.25, seed=0, movies=movies)
        assert index["val"].size == 0
        np.testing.assert_array_equal(index["train"], np.arange(60))
        np.testing.assert_array_equal(index["test"], np.arange(60, 100))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"val_size": -1}, r"data.val_size=-1 must be 0 \(no validation\), a fraction"),
        ({"val_size": False}, r"data.val_size=False must be 0 \(no validation\)"),
        ({"split": "random", "test_size": 0}, r"data.test_size=0 must be a fraction"),
    ],
)
def test_only_val_size_may_be_zero(tmp_path, tiny_archive, overrides, message):
    with pytest.raises(SentimentError, match=message):
        make_dm(tmp_path, archive=str(tiny_archive), **overrides)


def test_final_fit_trains_on_all_training_reviews_and_tests_the_last_epoch(train_cfg, recwarn):
    cfg = train_cfg(["model=mlp", "data.val_size=0", "trainer.max_epochs=3", "data.ngrams=1"])
    metrics = train(cfg)
    # no validation loop at all, so no warning about an empty validation loader either
    assert not [w for w in recwarn if "across ranks is zero" in str(w.message)]
    out = Path(cfg.paths.output_dir)
    stats = json.loads((out / "data_stats.json").read_text())["splits"]
    assert stats["train"]["reviews"] == 2 * PER_LABEL and stats["val"] == {"reviews": 0}
    # nothing watched validation: no best checkpoint, no early stop; the test scored the last epoch
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    assert Path(metrics["best_model_path"]).name == "last.ckpt" and metrics["epochs"] == 3
    assert "val/acc_best" not in metrics and 0.5 < metrics["test/acc"] <= 1.0
    columns = ["epoch", "seconds", "train/acc", "train/loss"]
    assert [sorted(row) for row in metrics["history"]] == [columns] * 3
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 2
    assert (out / "curves.png").stat().st_size > 1000


def test_final_fit_refuses_a_scheduler_that_watches_validation(train_cfg):
    cfg = train_cfg(["model=lstm", "data.val_size=0", "trainer.max_epochs=1"])  # ReduceLROnPlateau
    with pytest.raises(SentimentError, match=r"model.scheduler watches val/acc.*model.scheduler=null"):
        train(cfg)


def test_final_fit_with_a_fixed_schedule_cuts_the_rate_where_told(train_cfg):
    cfg = train_cfg(
        [
            "model=lstm",
            "data.val_size=0",
            "trainer.max_epochs=3",
            "model.net.embed_dim=16",
            "model.net.hidden_dim=8",
            "model.scheduler._target_=torch.optim.lr_scheduler.MultiStepLR",
            "~model.scheduler.mode",
            "~model.scheduler.factor",
            "~model.scheduler.patience",
            "~model.scheduler.monitor",
            "+model.scheduler.milestones=[2]",
            "+model.scheduler.gamma=0.3",
        ]
    )
    metrics = train(cfg)
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    # stepped after each epoch: 1e-3 for epochs 1-2, then 3e-4 (what the next epoch would use)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(3e-4)
    assert metrics["epochs"] == 3 and "test/acc" in metrics
