"""Validation splits: stratified by review, or by whole movies from the urls files."""

import numpy as np
import pytest

from lightning_sentiment import SentimentError
from lightning_sentiment.data.splits import movie_split, split_indices, stratified_split
from tests.conftest import MOVIE_SIZE, PER_LABEL, write_tiny_imdb
from tests.helpers import make_dm


def test_random_split_mode(tmp_path, tiny_archive):
    dm = make_dm(tmp_path, archive=str(tiny_archive), split="random", test_size=0.25, val_size=0.1)
    dm.setup()
    sizes = {name: len(split) for name, split in dm.splits.items()}
    assert sizes == {"train": 108, "val": 12, "test": 40}
    test_idx = dm.splits["test"].indices
    assert 0 < dm.corpus.is_test[test_idx].sum() < 40  # mixes both official halves
    everything = np.concatenate([s.indices for s in dm.splits.values()])
    assert sorted(everything) == list(range(160))


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
