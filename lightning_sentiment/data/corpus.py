"""The tokenized corpus and its on-disk cache.

Every review is stored as ids into a table of ALL words of the corpus (sorted
alphabetically), not yet into a vocabulary. Vocabulary size, OOV handling, split
and max length are then cheap array operations at setup, so changing them never
re-tokenizes; only the source and tokenizer settings key the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_sentiment.atomic import atomic_path
from lightning_sentiment.data.imdb import read_reviews
from lightning_sentiment.data.parallel import parallel_tokenize_ids
from lightning_sentiment.data.text import Tokenizer

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: movie ids
_ARRAYS = ("token_ids", "offsets", "labels", "is_test", "review_ids", "ratings", "movies", "words_blob")


@dataclass
class Corpus:
    """All 50k reviews as word ids (CSR layout) plus their metadata."""

    token_ids: np.ndarray  # (total_tokens,) int32 into `words`
    offsets: np.ndarray  # (N + 1,) int64; review i is token_ids[offsets[i]:offsets[i+1]]
    labels: np.ndarray  # (N,) int8
    is_test: np.ndarray  # (N,) bool
    review_ids: np.ndarray  # (N,) int32
    ratings: np.ndarray  # (N,) int8
    movies: np.ndarray  # (N,) int32; -1: unknown
    words: list[str]  # alphabetical
    n_invalid_utf8: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def build_corpus(source: Path, tokenizer: Tokenizer, workers: int | None = None) -> Corpus:
    """Read and tokenize every review of `source`, on `workers` processes (default: the
    usable cores, `parallel.py`)."""
    raw = read_reviews(source)
    first_seen, ids, lengths = parallel_tokenize_ids(raw.texts, tokenizer, workers)
    words = [w.decode() for w in first_seen]
    alphabetical = np.argsort(np.array(words, dtype=object), kind="stable")
    rank = np.empty_like(alphabetical)
    rank[alphabetical] = np.arange(len(words))
    return Corpus(
        token_ids=rank[ids].astype(np.int32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        labels=raw.labels,
        is_test=raw.is_test,
        review_ids=raw.ids,
        ratings=raw.ratings,
        movies=raw.movies,
        words=[words[i] for i in alphabetical],
        n_invalid_utf8=raw.n_invalid_utf8,
    )


def cache_path(cache_dir: Path, source: Path, tokenizer: Tokenizer) -> Path:
    """Cache file named by a hash of everything that changes the tokens."""
    source = source.resolve()
    stat = source.stat()
    key = {
        "version": CACHE_VERSION,
        "source": str(source),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        **tokenizer.settings(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"imdb-{digest}.npz"


def save_corpus(corpus: Corpus, path: Path) -> None:
    """Write atomically, so concurrent builders and crashes leave no broken cache."""
    blob = np.frombuffer("\n".join(corpus.words).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            token_ids=corpus.token_ids,
            offsets=corpus.offsets,
            labels=corpus.labels,
            is_test=corpus.is_test,
            review_ids=corpus.review_ids,
            ratings=corpus.ratings,
            movies=corpus.movies,
            words_blob=blob,
            n_invalid_utf8=np.int64(corpus.n_invalid_utf8),
        )


def load_corpus(path: Path) -> Corpus:
    """Read a cache file; raises ValueError if it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in _ARRAYS}
            n_invalid = int(z["n_invalid_utf8"])
    except Exception as err:  # zipfile, numpy and OS errors alike mean "damaged"
        raise ValueError(f"unreadable cache {path}: {err}") from err
    words = arrays.pop("words_blob").tobytes().decode().split("\n")
    corpus = Corpus(**arrays, words=words, n_invalid_utf8=n_invalid)
    n = len(corpus.labels)
    if (
        corpus.offsets.shape != (n + 1,)
        or corpus.offsets[-1] != len(corpus.token_ids)
        or (len(corpus.token_ids) and corpus.token_ids.max() >= len(words))
    ):
        raise ValueError(f"inconsistent cache {path}")
    return corpus


def load_or_build(
    source: Path, tokenizer: Tokenizer, cache_dir: Path | None, workers: int | None = None
) -> Corpus:
    """The corpus from cache when valid, else tokenized (and cached) on `workers` processes."""
    if cache_dir is None:
        return build_corpus(source, tokenizer, workers)
    path = cache_path(Path(cache_dir), source, tokenizer)
    if path.exists():
        try:
            return load_corpus(path)
        except ValueError as err:
            log.warning("%s; rebuilding it", err)
    start = time.perf_counter()
    corpus = build_corpus(source, tokenizer, workers)
    save_corpus(corpus, path)
    log.info("Tokenized %d reviews in %.1f s, cached at %s", len(corpus), time.perf_counter() - start, path)
    return corpus
