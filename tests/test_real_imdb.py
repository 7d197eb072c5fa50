"""Smoke test on the real IMDB archive, found through the IMDB_ARCHIVE variable."""

import os
from pathlib import Path

import pytest
from omegaconf import open_dict

from lightning_sentiment.pipeline import train

ARCHIVE = os.environ.get("IMDB_ARCHIVE")
pytestmark = pytest.mark.skipif(
    not ARCHIVE or not Path(ARCHIVE).is_file(), reason="set IMDB_ARCHIVE to the IMDB .tar.gz to run"
)


@pytest.mark.slow
def test_real_imdb_mlp_on_a_subset(tmp_path):
    from tests.conftest import compose_train_cfg

    cfg = compose_train_cfg(tmp_path, Path(ARCHIVE), ["model=mlp", "trainer.max_epochs=1"])
    with open_dict(cfg):
        cfg.data.vocab_size = 10000
        cfg.data.batch_size = 256
        cfg.data.eval_batch_size = 512
        cfg.trainer.limit_train_batches = 40  # 10,240 of the 22,500 training reviews
        cfg.trainer.limit_test_batches = 10  # 5,120 test reviews
    metrics = train(cfg)
    # the official split: 25k train (22.5k + 2.5k validation) and 25k test
    assert metrics["test/acc"] > 0.75  # one short epoch of the multi-hot MLP already learns
    vocab = (Path(cfg.paths.output_dir) / "vocab.txt").read_text().split("\n")[:-1]  # words may hold U+0085
    assert len(vocab) == 10000 and vocab[2:7] == ["the", "and", "a", "of", "to"]


def test_real_imdb_split_sizes(tmp_path):
    from lightning_sentiment.data import SentimentDataModule

    dm = SentimentDataModule(data_dir=str(tmp_path), archive=ARCHIVE, val_size=2500)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 22500, "val": 2500, "test": 25000}
    assert dm.corpus.labels[dm.splits["test"].indices].sum() == 12500


def test_real_imdb_split_by_movie(tmp_path):
    from lightning_sentiment.data import SentimentDataModule

    dm = SentimentDataModule(data_dir=str(tmp_path), archive=ARCHIVE, split_by="movie")
    dm.setup()
    splits = dm.stats["splits"]
    # 3,456 movies in the official training half, none shared by validation and training
    assert splits["train"]["movies"] + splits["val"]["movies"] == 3456
    assert splits["val"]["movies_also_in_train"] == 0 and splits["val"]["reviews"] == 2500
    assert splits["val"]["positive"] == 1250 and splits["test"]["movies_also_in_train"] <= 1
