"""The DataModule: reading the archive or folder, vocabulary, encoding, caches, bad input."""

import hashlib
import tarfile

import numpy as np
import pytest

from lightning_sentiment import SentimentError
from tests.conftest import PER_LABEL, TEST_ONLY_WORD
from tests.helpers import make_dm


@pytest.mark.parametrize("source", ["folder", "archive"])
def test_reads_folder_and_archive_identically(source, tmp_path, tiny_folder, tiny_archive):
    if source == "folder":
        dm = make_dm(tmp_path, data_dir=str(tiny_folder), cache=False)
    else:
        dm = make_dm(tmp_path, archive=str(tiny_archive))
    dm.setup("fit")
    sizes = {name: len(split) for name, split in dm.splits.items()}
    assert sizes == {"train": 72, "val": 8, "test": 2 * PER_LABEL}
    c = dm.corpus
    assert c.is_test.sum() == 2 * PER_LABEL and c.labels.sum() == 2 * PER_LABEL
    assert set(c.ratings[c.labels == 1]) <= set(range(7, 11)) and set(c.ratings[c.labels == 0]) <= {
        1,
        2,
        3,
        4,
    }
    # validation is stratified: 4 positive, 4 negative
    assert c.labels[dm.splits["val"].indices].sum() == 4


def test_folder_and_archive_give_same_ids(tmp_path, tiny_folder, tiny_archive):
    a = make_dm(tmp_path / "a", data_dir=str(tiny_folder), cache=False)
    b = make_dm(tmp_path / "b", archive=str(tiny_archive))
    a.setup()
    b.setup()
    assert a.vocab == b.vocab
    assert [a.splits["test"][i][0].tolist() for i in range(5)] == [
        b.splits["test"][i][0].tolist() for i in range(5)
    ]


def test_vocabulary_never_sees_test_or_val_reviews(tmp_path, tiny_archive):
    dm = make_dm(tmp_path, archive=str(tiny_archive), vocab_size=10_000)
    dm.setup()
    assert TEST_ONLY_WORD in dm.corpus.words  # tokenized, but...
    assert TEST_ONLY_WORD not in dm.vocab.index  # ...not in the vocabulary
    test_seq = dm.splits["test"][0][0]
    assert (test_seq == dm.vocab.oov_id).sum() == 1  # the test-only word, and only it, is OOV
    # the vocabulary is sorted by training frequency, ties alphabetical
    words = dm.vocab.words[2:]
    train_tokens = [w for i in dm.splits["train"].indices for w in _words(dm, i)]
    counts = [train_tokens.count(w) for w in words]
    assert counts == sorted(counts, reverse=True)
    assert all(words[i] < words[i + 1] for i in range(len(words) - 1) if counts[i] == counts[i + 1])


def _words(dm, i):
    c = dm.corpus
    return [c.words[t] for t in c.token_ids[c.offsets[i] : c.offsets[i + 1]]]


def test_vocab_size_and_oov_modes(tmp_path, tiny_archive):
    with_oov = make_dm(tmp_path, archive=str(tiny_archive), vocab_size=6)
    with_oov.setup()
    assert len(with_oov.vocab) == 6 and with_oov.vocab.words[:2] == ["<pad>", "<unk>"]
    ids = np.concatenate([with_oov.splits["train"][i][0] for i in range(len(with_oov.splits["train"]))])
    assert ids.max() == 5 and (ids == 1).any()
    dropped = make_dm(tmp_path, archive=str(tiny_archive), vocab_size=6, oov_token=None)
    dropped.setup()
    assert dropped.vocab.words[0] == "<pad>" and "<unk>" not in dropped.vocab.words
    seq_drop = dropped.splits["train"][0][0]
    known = [w for w in _words(dropped, dropped.splits["train"].indices[0]) if w in dropped.vocab.index]
    assert seq_drop.tolist() == [dropped.vocab.index[w] for w in known] and seq_drop.min() >= 1


def test_max_len_truncation_in_dataset(tmp_path, tiny_archive):
    full = make_dm(tmp_path, archive=str(tiny_archive), max_len=None)
    full.setup()
    long = max(range(len(full.splits["train"])), key=lambda i: len(full.splits["train"][i][0]))
    whole = full.splits["train"][long][0]
    for truncating, expected in (("pre", whole[-10:]), ("post", whole[:10])):
        dm = make_dm(tmp_path, archive=str(tiny_archive), max_len=10, truncating=truncating)
        dm.setup()
        assert dm.splits["train"][long][0].tolist() == expected.tolist()


@pytest.mark.parametrize("settings", [dict(ngrams=2, max_len=None), dict(oov_token=None, max_len=30)])
def test_a_given_vocabulary_encodes_like_one_built_here(tmp_path, tiny_archive, settings):
    """Setup fills the id table from the corpus ids of a vocabulary it built, and by name
    for one it was given (a checkpoint's): both must give the same ids."""
    built = make_dm(tmp_path, archive=str(tiny_archive), vocab_size=60, **settings)
    built.setup()
    given = make_dm(tmp_path, archive=str(tiny_archive), vocab_size=60, **settings)
    given.vocab = built.vocab
    given.setup()
    if "oov_token" in settings:  # no OOV: unknown words are dropped, so that path runs too
        assert len(built.splits["train"].ids) < len(built.corpus.token_ids)
    for name, split in built.splits.items():
        np.testing.assert_array_equal(given.splits[name].ids, split.ids)
        np.testing.assert_array_equal(given.splits[name].offsets, split.offsets)
    np.testing.assert_array_equal(given._known_word, built._known_word)


@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_distinct_reviews_are_each_truncated_reviews_ids_once(tmp_path, tiny_archive, truncating):
    settings = dict(archive=str(tiny_archive), max_len=12, truncating=truncating, ngrams=2, vocab_size=200)
    plain, sets = make_dm(tmp_path, **settings), make_dm(tmp_path, **settings, distinct=True)
    plain.setup()
    sets.setup()
    assert sets.stats == plain.stats  # the stats describe the reviews as read
    for name, split in plain.splits.items():
        for i in range(len(split)):
            review, label, index = split[i]
            assert sets.splits[name][i][0].tolist() == np.unique(review).tolist()
            assert sets.splits[name][i][1:] == (label, index)
    assert any(len(np.unique(split[i][0])) < len(split[i][0]) for i in range(len(split)))  # had repeats


def test_missing_data_gives_one_line_error(tmp_path):
    url = (tmp_path / "nowhere.tar.gz").as_uri()
    dm = make_dm(tmp_path, download_url=url)
    with pytest.raises(SentimentError) as err:
        dm.setup()
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "data.archive=PATH" in msg
    assert list((tmp_path / "data").glob("*")) == []  # nothing half-written
    with pytest.raises(SentimentError, match="does not exist"):
        make_dm(tmp_path, archive=str(tmp_path / "missing.tar.gz")).setup()


def test_download_verifies_and_renames(tmp_path, tiny_archive):
    sha = hashlib.sha256(tiny_archive.read_bytes()).hexdigest()
    bad = make_dm(tmp_path, download_url=tiny_archive.as_uri(), download_sha256="0" * 64)
    with pytest.raises(SentimentError, match="sha256"):
        bad.setup()
    assert list((tmp_path / "data").glob("*.gz*")) == []
    good = make_dm(tmp_path, download_url=tiny_archive.as_uri(), download_sha256=sha)
    good.setup()
    assert (tmp_path / "data" / "aclImdb_v1.tar.gz").read_bytes() == tiny_archive.read_bytes()
    assert len(good.splits["test"]) == 2 * PER_LABEL


def test_corrupt_and_truncated_archives(tmp_path, tiny_archive):
    data = tiny_archive.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 100)
    for path in (truncated, garbage):
        with pytest.raises(SentimentError, match="corrupt|truncated"):
            make_dm(tmp_path, archive=str(path), cache=False).setup()
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(SentimentError, match="no reviews found"):
        make_dm(tmp_path, archive=str(empty), cache=False).setup()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"max_len": 0}, "data.max_len"),
        ({"vocab_size": 1}, "data.vocab_size"),
        ({"padding": "middle"}, "data.padding"),
        ({"truncating": "both"}, "data.truncating"),
        ({"val_size": 1.5}, "data.val_size"),
        ({"split": "weird"}, "data.split"),
        ({"split_by": "film"}, "data.split_by"),
    ],
)
def test_bad_settings_fail_fast(tmp_path, kwargs, key):
    with pytest.raises(SentimentError, match=key):
        make_dm(tmp_path, **kwargs)


def test_a_bad_choice_names_the_key_and_the_allowed_values(tmp_path):
    with pytest.raises(SentimentError) as caught:
        make_dm(tmp_path, padding="middle")
    assert str(caught.value) == "data.padding=middle is not allowed: use pre, post"


def test_val_size_larger_than_train(tmp_path, tiny_archive):
    with pytest.raises(SentimentError, match="data.val_size"):
        make_dm(tmp_path, archive=str(tiny_archive), val_size=5000).setup()


def test_bigrams_encode_like_prediction(tmp_path, tiny_archive):
    from lightning_sentiment.data.imdb import read_reviews
    from lightning_sentiment.data.ngrams import bigram_tokens

    dm = make_dm(tmp_path, archive=str(tiny_archive), vocab_size=400, ngrams=2, max_len=None)
    dm.setup()
    bigrams = [w for w in dm.vocab.words if " " in w]
    assert bigrams and len(dm.vocab) <= 400
    texts = read_reviews(tiny_archive).texts
    for i in dm.splits["test"].indices[:5]:
        tokens = dm.tokenizer.tokenize(texts[i])
        expected = dm.vocab.encode(tokens + bigram_tokens(tokens))
        position = list(dm.splits["test"].indices).index(i)
        assert dm.splits["test"][position][0].tolist() == expected.tolist()
    assert dm.stats["splits"]["train"]["oov_rate"] == 0  # the stats count words, not bigrams
    with pytest.raises(SentimentError, match="data.ngrams"):
        make_dm(tmp_path, ngrams=3)
