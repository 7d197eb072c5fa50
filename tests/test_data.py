import hashlib
import tarfile

import numpy as np
import pytest
import torch

from lightning_sentiment import SentimentError
from lightning_sentiment.data import SentimentDataModule, corpus
from lightning_sentiment.data.batching import BucketBatchSampler, EncodedReviews, PadCollate
from lightning_sentiment.data.splits import movie_split, split_indices, stratified_split
from tests.conftest import MOVIE_SIZE, PER_LABEL, TEST_ONLY_WORD, write_tiny_imdb


def make_dm(tmp_path, **kwargs) -> SentimentDataModule:
    kwargs.setdefault("data_dir", str(tmp_path / "data"))
    kwargs.setdefault("vocab_size", 50)
    kwargs.setdefault("batch_size", 8)
    return SentimentDataModule(**kwargs)


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


def test_batches_are_padded_only_as_needed(tmp_path, tiny_archive):
    for padding in ("pre", "post"):
        dm = make_dm(tmp_path, archive=str(tiny_archive), max_len=None, padding=padding)
        dm.setup()
        tokens, labels, index = next(iter(dm.val_dataloader()))
        lengths = (tokens != 0).sum(1)
        assert tokens.shape[1] == lengths.max()  # no all-padding columns
        edge = tokens[:, 0] if padding == "post" else tokens[:, -1]
        assert (edge != 0).all()
        assert labels.tolist() == dm.corpus.labels[index.numpy()].tolist()


def test_bucket_sampler_covers_everything_with_little_padding():
    lengths = np.random.default_rng(0).integers(1, 500, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=32, shuffle=True, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(sampler)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert 1 - lengths.sum() / padded < 0.05
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new shuffle every epoch...
    sampler.set_epoch(0)
    assert list(sampler) == batches  # ...reproducible from the seed


def test_random_split_mode(tmp_path, tiny_archive):
    dm = make_dm(tmp_path, archive=str(tiny_archive), split="random", test_size=0.25, val_size=0.1)
    dm.setup()
    sizes = {name: len(split) for name, split in dm.splits.items()}
    assert sizes == {"train": 108, "val": 12, "test": 40}
    test_idx = dm.splits["test"].indices
    assert 0 < dm.corpus.is_test[test_idx].sum() < 40  # mixes both official halves
    everything = np.concatenate([s.indices for s in dm.splits.values()])
    assert sorted(everything) == list(range(160))


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


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("max_len", [None, 3, 0])
def test_batched_fetch_equals_per_review_padding(padding, truncating, max_len):
    """The DataLoader's whole-batch fetch pads exactly like pad_sequences on each review."""
    rng = np.random.default_rng(0)
    lengths = np.array([5, 0, 1, 7, 3, 0, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(2, 50, offsets[-1]).astype(np.int32)
    labels = rng.integers(0, 2, len(lengths))
    data = EncodedReviews(ids, offsets, labels, np.array([6, 0, 3, 1, 4]), max_len, truncating)
    collate = PadCollate(padding)
    items = [4, 0, 2, 1]
    whole = collate(data.__getitems__(items))
    one_by_one = collate([data[i] for i in items])
    for got, expected in zip(whole, one_by_one, strict=True):
        assert got.dtype == expected.dtype
        assert torch.equal(got, expected)
    loader = torch.utils.data.DataLoader(data, batch_sampler=[items], collate_fn=collate)
    assert torch.equal(next(iter(loader))[0], one_by_one[0])  # the DataLoader takes the fast path


def test_movies_come_from_the_urls_files(tmp_path, tiny_archive):
    dm = make_dm(tmp_path, archive=str(tiny_archive))
    dm.setup()
    c = dm.corpus
    # review i of a (split, label) folder is line i of its urls file: MOVIE_SIZE a movie,
    # the same movie for both labels, different movies in train and test
    train_pos = c.movies[~c.is_test & (c.labels == 1)][np.argsort(c.review_ids[~c.is_test & (c.labels == 1)])]
    assert (train_pos == train_pos[0]).sum() == MOVIE_SIZE and len(set(train_pos)) == PER_LABEL // MOVIE_SIZE
    assert set(c.movies[~c.is_test & (c.labels == 0)]) == set(train_pos)
    assert not set(c.movies[c.is_test]) & set(train_pos) and (c.movies >= 0).all()


@pytest.mark.parametrize("split", ["official", "random"])
def test_split_by_movie_holds_out_whole_movies(tmp_path, tiny_archive, split):
    by_review = make_dm(tmp_path / "r", archive=str(tiny_archive), split=split, val_size=0.25)
    by_movie = make_dm(
        tmp_path / "m", archive=str(tiny_archive), split=split, val_size=0.25, split_by="movie"
    )
    by_review.setup()
    by_movie.setup()
    assert by_review.stats["splits"]["val"]["movies_also_in_train"] > 0  # reviews of one movie on both sides
    movies = by_movie.corpus.movies
    parts = {name: set(movies[s.indices]) for name, s in by_movie.splits.items()}
    assert not parts["val"] & parts["train"] and by_movie.stats["splits"]["val"]["movies_also_in_train"] == 0
    if split == "random":  # test_size is carved movie by movie too
        assert not parts["test"] & (parts["train"] | parts["val"])
    val = by_movie.splits["val"].indices
    # whole movies of MOVIE_SIZE reviews a label: short of the per-review size by less than a movie a label
    assert len(by_review.splits["val"]) - 2 * MOVIE_SIZE < len(val) <= len(by_review.splits["val"])
    assert by_movie.corpus.labels[val].sum() == len(val) // 2
    everything = np.concatenate([s.indices for s in by_movie.splits.values()])
    assert sorted(everything) == list(range(len(movies)))


def test_movie_split_is_seeded_and_balanced():
    rng = np.random.default_rng(0)
    movies = np.repeat(np.arange(300), rng.integers(1, 30, 300))  # 1-29 reviews a movie, as IMDB
    labels = rng.integers(0, 2, len(movies))
    index = np.arange(len(movies))
    rest, held = movie_split(index, labels, movies, 0.1, np.random.default_rng(1), "val_size")
    again = movie_split(index, labels, movies, 0.1, np.random.default_rng(1), "val_size")[1]
    other = movie_split(index, labels, movies, 0.1, np.random.default_rng(2), "val_size")[1]
    assert np.array_equal(held, again) and not np.array_equal(held, other)
    assert not set(movies[held]) & set(movies[rest]) and len(rest) + len(held) == len(movies)
    want = round(0.1 * len(movies))
    assert want - 5 <= len(held) <= want  # whole movies: at most a few short, never over
    assert abs(labels[held].mean() - labels.mean()) < 0.02


@pytest.mark.parametrize(
    ("size", "held"), [(1, [1, 0]), (3, [2, 1]), (5, [3, 2]), (0.15, [2, 1]), (10, [5, 5])]
)
def test_stratified_split_holds_out_exactly_the_size_asked(size, held):
    """Each label's share rounded so the shares add up: rounding each alone held out none
    of 1 review (a validation split with no review) and 4 of 3."""
    labels = np.repeat([0, 1], 10)
    rest, out = stratified_split(np.arange(20), labels, size, np.random.default_rng(0), "val_size")
    assert np.bincount(labels[out], minlength=2).tolist() == held
    assert sorted([*rest, *out]) == list(range(20))


def test_a_movie_split_with_no_movie_small_enough_says_so():
    labels, movies = np.repeat([0, 1], 10), np.tile(np.arange(10), 2)  # every movie: one of each label
    is_test = np.zeros(20, dtype=bool)
    with pytest.raises(SentimentError, match="data.val_size=1 holds out no whole movie"):
        split_indices(labels, is_test, "official", 1, 0.25, seed=0, movies=movies)
    assert len(split_indices(labels, is_test, "official", 2, 0.25, seed=0, movies=movies)["val"]) == 2


def test_split_by_movie_without_urls_files_says_what_to_do(tmp_path):
    write_tiny_imdb(tmp_path / "data", with_urls=False)
    with pytest.raises(SentimentError, match="data.split_by=review"):
        make_dm(tmp_path, data_dir=str(tmp_path / "data"), split_by="movie", cache=False).setup()
    make_dm(tmp_path, data_dir=str(tmp_path / "data"), cache=False).setup()  # by review: fine
