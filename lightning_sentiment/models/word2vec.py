"""Word vectors trained on the training reviews alone, to start an LSTM's embedding from.

The classic IMDB LSTM papers start from word2vec vectors trained on more text; here
skip-gram with negative sampling (gensim, whose C loop trains on the 5.3M tokens of the
default run in about four minutes on one core) reads only the training split the
classifier trains on: no validation, test or unlabeled reviews. The vectors are cached
beside the data, keyed by the training ids, the sizes and the seed, so a run repeats
none of it.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path

import numpy as np

from lightning_sentiment.atomic import atomic_path
from lightning_sentiment.errors import SentimentError

log = logging.getLogger(__name__)
CACHE_VERSION = 1
# Mikolov et al.'s skip-gram settings; 10 passes over the 22,500 default training reviews
SETTINGS = {"sg": 1, "window": 5, "negative": 5, "sample": 1e-4, "epochs": 10, "min_count": 1}


def stable_hash(text: str) -> int:
    """gensim seeds each word's first vector from a hash of the word; Python's own str
    hash changes with every process (PYTHONHASHSEED), so the vectors would too."""
    return zlib.crc32(text.encode())


def training_sentences(dataset) -> list[list[str]]:
    """The training reviews as they are read (truncated to max_len), ids as strings."""
    starts, ends = dataset.spans(dataset.indices)
    return [[str(t) for t in dataset.ids[s:e].tolist()] for s, e in zip(starts, ends, strict=True)]


def cache_key(dataset, vocab_size: int, dim: int, seed: int) -> str:
    key = dataset.content_hash()
    key.update(f"{CACHE_VERSION}:{vocab_size}:{dim}:{seed}:{sorted(SETTINGS.items())}".encode())
    return key.hexdigest()[:16]


def word2vec_vectors(
    dataset, vocab_size: int, dim: int, seed: int, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (vocab_size, dim) float32, seen (vocab_size,) bool): word2vec over the
    reviews of `dataset`; rows of ids that never occur are zero and not `seen`."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"word2vec-{cache_key(dataset, vocab_size, dim, seed)}.npz"
        cached = _read_cache(path, vocab_size, dim)
        if cached is not None:
            return cached
    sentences = training_sentences(dataset)
    # minutes of silence otherwise: say what runs, once per split and seed
    log.info(
        "word2vec: training %d-dimensional vectors on %d training reviews (one core: minutes on a "
        "whole training split; %s)",
        dim,
        len(sentences),
        "cached after" if path is not None else "not cached",
    )
    start = time.perf_counter()
    wv = _train_word2vec(sentences, dim, seed)
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    seen = np.zeros(vocab_size, dtype=bool)
    ids = np.array([int(k) for k in wv.index_to_key])
    inside = ids < vocab_size
    vectors[ids[inside]] = wv.vectors[inside]
    seen[ids[inside]] = True
    seconds = time.perf_counter() - start
    log.info("word2vec: %d ids in %.1f s (training reviews only)", int(seen.sum()), seconds)
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, vectors=vectors, seen=seen)
    return vectors, seen


def _read_cache(path: Path, vocab_size: int, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (vectors, seen), or None when absent, damaged or of other sizes."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            vectors, seen = z["vectors"], z["seen"]
        if vectors.shape == (vocab_size, dim) and seen.shape == (vocab_size,):
            return vectors, seen
        log.warning("word2vec cache %s does not fit; training again", path)
    except Exception as err:  # zipfile, numpy and OS errors alike mean "damaged"
        log.warning("unreadable word2vec cache %s (%s); training again", path, err)
    return None


def _train_word2vec(sentences: list[list[str]], dim: int, seed: int):
    """gensim's KeyedVectors of skip-gram over `sentences`, its INFO lines quiet."""
    try:
        from gensim.models import Word2Vec
    except ImportError as err:
        raise SentimentError(
            "model.net.embed_init=word2vec needs gensim: pip install gensim (a dependency of this project)"
        ) from err
    gensim_log = logging.getLogger("gensim")
    level = gensim_log.level
    gensim_log.setLevel(logging.WARNING)  # its INFO lines: ~300 a run, one a second
    try:
        # One worker: gensim's threads share the vectors unsynchronised, so more than one
        # makes every run differ; the cache pays this once per split and seed.
        model = Word2Vec(sentences, vector_size=dim, seed=seed, workers=1, hashfxn=stable_hash, **SETTINGS)
    finally:
        gensim_log.setLevel(level)
    return model.wv
