"""Tokenizing in worker processes gives exactly the one-process corpus."""

import logging
import sys

import numpy as np
import pytest

from lightning_sentiment.data import corpus, parallel
from lightning_sentiment.data.text import Tokenizer

TEXTS = [
    "A great film!<br />Loved it.",
    "",
    "Dull, DULL and far too long",
    "Ünïcode wörds: Straße, ÉTÉ",
    "great plot, dull actors",
    "sep\x01inside the review",
    "a film",
]


def _as_tokens(result):
    """Each review's tokens as strings, from (words, ids, lengths)."""
    words, ids, lengths = result
    ends = np.cumsum(lengths)
    return [[words[i].decode() for i in ids[end - n : end]] for n, end in zip(lengths, ends, strict=True)]


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_workers_give_the_one_process_result(workers, monkeypatch):
    tok = Tokenizer()
    serial = parallel.tokenize_ids(TEXTS, tok)
    here = []  # slices tokenized in this process: only the first, the rest in workers
    real = parallel.tokenize_ids
    monkeypatch.setattr(parallel, "tokenize_ids", lambda texts, t: here.append(len(texts)) or real(texts, t))
    result = parallel.parallel_tokenize_ids(TEXTS, tok, workers=workers, min_reviews=1)
    assert len(here) == 1 and here[0] < len(TEXTS)
    # the same words in the same (corpus first-seen) order, the same ids and lengths
    assert result[0] == serial[0]
    assert np.array_equal(result[1], serial[1]) and np.array_equal(result[2], serial[2])
    assert _as_tokens(result) == [tok.tokenize(t) for t in TEXTS]


def test_tokenizer_settings_reach_the_workers():
    tok = Tokenizer(lowercase=False, filters="!", strip_html=False)
    result = parallel.parallel_tokenize_ids(TEXTS, tok, workers=3, min_reviews=1)
    assert _as_tokens(result) == [tok.tokenize(t) for t in TEXTS]


def test_small_corpora_stay_in_process(monkeypatch):
    def no_worker(*args):
        raise AssertionError("a worker was started for a small corpus")

    monkeypatch.setattr(parallel, "_start", no_worker)
    result = parallel.parallel_tokenize_ids(TEXTS, Tokenizer(), workers=4)  # 7 reviews < 5,000
    assert _as_tokens(result) == [Tokenizer().tokenize(t) for t in TEXTS]


@pytest.mark.parametrize(
    "command", [[sys.executable, "-c", "import sys; sys.exit(3)"], ["/nonexistent/python"]]
)
def test_a_failed_worker_costs_time_not_the_result(command, monkeypatch, caplog):
    real_popen = parallel.subprocess.Popen

    def broken_popen(args, **kwargs):
        return real_popen(command, **kwargs)

    monkeypatch.setattr(parallel.subprocess, "Popen", broken_popen)
    with caplog.at_level(logging.WARNING, logger=parallel.__name__):
        result = parallel.parallel_tokenize_ids(TEXTS, Tokenizer(), workers=2, min_reviews=1)
    assert _as_tokens(result) == [Tokenizer().tokenize(t) for t in TEXTS]
    assert "tokenizing its reviews here" in caplog.text


def test_archive_corpus_is_the_same_on_one_or_several_processes(tiny_archive, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_REVIEWS_A_WORKER", 10)  # 160 reviews: 3 slices
    one = corpus.build_corpus(tiny_archive, Tokenizer(), workers=1)
    three = corpus.build_corpus(tiny_archive, Tokenizer(), workers=3)
    assert one.words == three.words
    assert np.array_equal(one.token_ids, three.token_ids) and np.array_equal(one.offsets, three.offsets)


@pytest.mark.parametrize("threads", [1, 2])
def test_datamodule_tokenizes_on_as_many_processes_as_threads(threads, tiny_archive, tmp_path, monkeypatch):
    import torch

    from lightning_sentiment.data import SentimentDataModule

    monkeypatch.setattr(parallel, "MIN_REVIEWS_A_WORKER", 10)
    started = []
    real_start = parallel._start
    monkeypatch.setattr(parallel, "_start", lambda *a: started.append(1) or real_start(*a))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # what train.py sets from `threads` (sweep jobs split the cores)
    try:
        dm = SentimentDataModule(data_dir=str(tmp_path), archive=str(tiny_archive), vocab_size=50)
        dm.setup("fit")
    finally:
        torch.set_num_threads(before)
    assert len(started) == threads - 1
    assert len(dm.corpus) == 160


def test_workers_import_this_package_not_one_in_the_working_directory(tmp_path, monkeypatch, caplog):
    shadow = tmp_path / "lightning_sentiment"  # an old copy of the package where the run starts
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the copy in the working directory')\n")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger=parallel.__name__):
        result = parallel.parallel_tokenize_ids(TEXTS, Tokenizer(), workers=2, min_reviews=1)
    assert _as_tokens(result) == [Tokenizer().tokenize(t) for t in TEXTS]
    assert "tokenizing its reviews here" not in caplog.text  # the worker ran


def test_an_interrupted_build_leaves_no_worker(monkeypatch):
    procs = []
    real_start = parallel._start

    def start(*args):
        job = real_start(*args)
        procs.append(job[0])
        return job

    def interrupted(texts, tokenizer):
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "_start", start)
    monkeypatch.setattr(parallel, "tokenize_ids", interrupted)
    with pytest.raises(KeyboardInterrupt):
        parallel.parallel_tokenize_ids(TEXTS, Tokenizer(), workers=3, min_reviews=1)
    assert len(procs) == 2
    assert all(proc.wait(timeout=10) is not None for proc in procs)  # killed (or done), not left running
    assert all(proc.returncode != 0 for proc in procs)
