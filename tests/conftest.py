"""Shared fixtures: a tiny IMDB-layout dataset the tests write themselves."""

from __future__ import annotations

import random
import tarfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
POSITIVE = ["great", "wonderful", "loved", "brilliant", "superb", "enjoyable"]
NEGATIVE = ["awful", "boring", "terrible", "worst", "dull", "waste"]
NEUTRAL = ["the", "movie", "film", "plot", "actor", "and", "a", "it", "was", "story", "scene", "i"]
TEST_ONLY_WORD = "zzzonlyintest"
PER_LABEL = 40  # reviews per (split, label)
MOVIE_SIZE = 4  # reviews per (movie, label) in urls_{pos,neg}.txt


def _review(rng: random.Random, positive: bool, split: str) -> str:
    cues = POSITIVE if positive else NEGATIVE
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(5, 60))]
    for _ in range(rng.randint(2, 4)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
    if split == "test":
        words.append(TEST_ONLY_WORD)
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "!<br /><br />" + rng.choice(NEUTRAL).capitalize() + "."


def write_tiny_imdb(root: Path, per_label: int = PER_LABEL, seed: int = 0, with_urls: bool = True) -> Path:
    """An aclImdb/ folder with the official layout (plus files the reader must skip)."""
    rng = random.Random(seed)
    base = root / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            folder = base / split / label
            folder.mkdir(parents=True)
            for i in range(per_label):
                rating = rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                (folder / f"{i}_{rating}.txt").write_text(_review(rng, label == "pos", split))
            # line i: the movie of review i; MOVIE_SIZE reviews a movie, both labels alike
            urls = [
                f"http://www.imdb.com/title/tt{split}{i // MOVIE_SIZE}/usercomments" for i in range(per_label)
            ]
            if with_urls:
                (base / split / f"urls_{label}.txt").write_text("\n".join(urls) + "\n")
        (base / split / f"urls_{split}.txt").write_text(
            "http://example.com\n"
        )  # not a urls file the reader uses
    (base / "README").write_text("tiny IMDB for tests\n")
    (base / "imdb.vocab").write_text("the\n")
    return base


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A data_dir holding an extracted aclImdb/ folder."""
    root = tmp_path_factory.mktemp("tiny_folder")
    write_tiny_imdb(root)
    return root


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    """A tiny aclImdb_v1.tar.gz with the official layout."""
    root = tmp_path_factory.mktemp("tiny_archive")
    base = write_tiny_imdb(root / "src")
    path = root / "aclImdb_v1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(base, arcname="aclImdb")
    return path


def compose_train_cfg(tmp_path: Path, archive: Path, overrides: list[str] = ()) -> DictConfig:
    """The real conf/train.yaml, pointed at the tiny archive and writing into tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.num = 0
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.data.archive = str(archive)
        cfg.data.batch_size = 16
        cfg.data.eval_batch_size = 32
        cfg.data.vocab_size = 64
        cfg.data.max_len = 40 if cfg.data.max_len else None
        cfg.trainer.accelerator = "cpu" if cfg.trainer.accelerator == "auto" else cfg.trainer.accelerator
    HydraConfig().set_config(cfg)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def train_cfg(tmp_path, tiny_archive):
    """Factory: `train_cfg(["model=mlp", ...])` -> composed config."""
    return lambda overrides=(): compose_train_cfg(tmp_path, tiny_archive, overrides)
