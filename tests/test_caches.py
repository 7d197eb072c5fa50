"""The tokenized-data and bigram caches: reused across runs, rebuilt when damaged."""

import numpy as np
import pytest

from lightning_sentiment.data import corpus
from tests.helpers import make_dm


def _forbid(monkeypatch, module, name: str):
    """Make `module.name` fail if called (a valid cache must spare it); returns the real one."""
    real = getattr(module, name)

    def no_build(*args):
        raise AssertionError(f"{name} built again despite a valid cache")

    monkeypatch.setattr(module, name, no_build)
    return real


def test_cache_is_reused_and_rebuilt_when_corrupt(tmp_path, tiny_archive, monkeypatch):
    first = make_dm(tmp_path, archive=str(tiny_archive))
    first.setup()
    (cache_file,) = (tmp_path / "data" / "cache").glob("*.npz")
    real_build = _forbid(monkeypatch, corpus, "build_corpus")
    second = make_dm(tmp_path, archive=str(tiny_archive))
    second.setup()
    assert second.vocab == first.vocab
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # damage it
    monkeypatch.setattr(corpus, "build_corpus", real_build)
    third = make_dm(tmp_path, archive=str(tiny_archive))
    third.setup()
    assert third.vocab == first.vocab
    assert corpus.load_corpus(cache_file).token_ids.size == first.corpus.token_ids.size
    assert not list(cache_file.parent.glob(".*tmp"))  # no temporary files left


def test_bigrams_are_cached_per_split_and_rebuilt_when_corrupt(tmp_path, tiny_archive, monkeypatch):
    from lightning_sentiment.data import ngrams

    settings = dict(archive=str(tiny_archive), vocab_size=400, ngrams=2, max_len=None)
    first = make_dm(tmp_path, **settings)
    first.setup()
    (bigram_file,) = (tmp_path / "data" / "cache").glob("*-bigrams-*.npz")
    real_build = _forbid(monkeypatch, ngrams, "with_bigrams")
    second = make_dm(tmp_path, **settings)
    second.setup()
    assert second.vocab == first.vocab and any(" " in w for w in second.vocab.words)
    for name, split in first.splits.items():
        np.testing.assert_array_equal(second.splits[name].ids, split.ids)
        np.testing.assert_array_equal(second.splits[name].offsets, split.offsets)
    with pytest.raises(AssertionError, match="built again"):  # another split: other bigrams
        make_dm(tmp_path, **settings, seed=7).setup()
    bigram_file.write_bytes(bigram_file.read_bytes()[:100])  # damage it
    monkeypatch.setattr(ngrams, "with_bigrams", real_build)
    third = make_dm(tmp_path, **settings)
    third.setup()
    assert third.vocab == first.vocab
    _forbid(monkeypatch, ngrams, "with_bigrams")
    make_dm(tmp_path, **settings).setup()  # the rebuilt file is read
    assert not list(bigram_file.parent.glob(".*tmp"))
