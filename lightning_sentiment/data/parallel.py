"""Tokenizing a corpus on several cores: the reviews in slices, one a process.

Tokens and their ids are Python objects (11.5M of them for IMDB), so one process
tokenizes at ~4 s on these CPUs whatever numpy does. Each extra slice goes to a fresh
Python process running `main` below, through pipes, not `multiprocessing`:
its spawn would re-import the running script (train.py imports Lightning, ~3 s), and
fork is unsafe once torch's threads run. A worker that fails costs time, not the run:
its slice is tokenized here instead.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Sequence
from itertools import chain, count
from pathlib import Path

import numpy as np

from lightning_sentiment.data.text import Tokenizer

log = logging.getLogger(__name__)
MIN_REVIEWS_A_WORKER = 5_000  # below this a worker's start-up (~0.2 s) costs more than it saves
MAX_WORKERS = 8
# The worker imports this very package, first on its path: `-m` would put the working
# directory first, where another copy of the package may lie.
_WORKER = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); "
    "from lightning_sentiment.data.parallel import main; main()"
)


def tokenize_ids(texts: Sequence[str], tokenizer: Tokenizer) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """(words in first-seen order, ids (total,) int32 into them, lengths (N,) int64)."""
    tokens = tokenizer.tokenize_corpus(texts)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    # First-seen ids through a defaultdict: ~10x faster than np.unique on strings.
    first_seen = defaultdict(count().__next__)
    ids = np.fromiter(
        map(first_seen.__getitem__, chain.from_iterable(tokens)),
        dtype=np.int32,
        count=int(lengths.sum()),
    )
    return list(first_seen), ids, lengths


def default_workers() -> int:
    """The cores this process may use (all of them where affinity is unknown), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def parallel_tokenize_ids(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    workers: int | None = None,
    min_reviews: int | None = None,
) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """`tokenize_ids` over `workers` processes (default: the usable cores), the same result."""
    workers = default_workers() if workers is None else workers
    min_reviews = MIN_REVIEWS_A_WORKER if min_reviews is None else max(min_reviews, 1)
    slices = max(1, min(workers, len(texts) // min_reviews))
    if slices == 1:
        return tokenize_ids(texts, tokenizer)
    bounds = np.linspace(0, len(texts), slices + 1).astype(int)
    parts = [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    started = [_start(part, tokenizer) for part in parts[1:]]  # they work while this process does
    try:
        results = [tokenize_ids(parts[0], tokenizer)]
        results += [_finish(job, part, tokenizer) for job, part in zip(started, parts[1:], strict=True)]
    except BaseException:  # Ctrl-C, or an error here: no worker outlives the build
        for job in filter(None, started):
            job[0].kill()
        raise
    return _merge(results)


def _start(texts: Sequence[str], tokenizer: Tokenizer):
    """A worker process fed its slice by a thread (a pipe holds 64 KB), or None."""
    try:
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        proc = subprocess.Popen([sys.executable, "-c", _WORKER], **pipes)
    except OSError as err:
        log.warning("no tokenizer worker (%s): tokenizing its reviews here", err)
        return None
    payload = pickle.dumps((tokenizer.settings(), list(texts)), protocol=pickle.HIGHEST_PROTOCOL)

    def feed() -> None:
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except OSError:
            pass  # the worker died; _finish sees its exit status

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return proc, writer


def _finish(job, texts: Sequence[str], tokenizer: Tokenizer):
    if job is not None:
        proc, writer = job
        try:
            out = proc.stdout.read()
            writer.join()
            if proc.wait() == 0:
                return pickle.loads(out)
            log.warning("tokenizer worker exit status %d: tokenizing its reviews here", proc.returncode)
        except (OSError, pickle.UnpicklingError, EOFError) as err:
            proc.kill()
            log.warning("a tokenizer worker failed (%s): tokenizing its reviews here", err)
    return tokenize_ids(texts, tokenizer)


def _merge(results) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Slices' (words, ids, lengths) -> the corpus', words in the corpus' first-seen order."""
    index: dict[bytes, int] = {}
    all_ids, all_lengths = [], []
    for words, ids, lengths in results:
        remap = np.fromiter(  # (len(words),): this slice's word ids -> the corpus'
            (index.setdefault(w, len(index)) for w in words), dtype=np.int32, count=len(words)
        )
        all_ids.append(remap[ids])
        all_lengths.append(lengths)
    return list(index), np.concatenate(all_ids), np.concatenate(all_lengths)


def main() -> None:
    """Worker: a pickled (tokenizer settings, texts) on stdin -> `tokenize_ids` on stdout."""
    settings, texts = pickle.load(sys.stdin.buffer)
    result = tokenize_ids(texts, Tokenizer(**settings))
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
