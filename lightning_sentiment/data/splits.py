"""Train / validation / test index splits, stratified by label and seeded.

Held-out parts are drawn review by review, or movie by movie: IMDB has up to 30
reviews of a movie, and the official test set shares no movie with the training set.
"""

from __future__ import annotations

import numpy as np

from lightning_sentiment.errors import SentimentError


def _count(size: float | int, n: int, key: str) -> int:
    k = int(round(size * n)) if isinstance(size, float) else int(size)
    if not 1 <= k < n:
        raise SentimentError(f"data.{key}={size} leaves no reviews on one side of a split of {n}")
    return k


def stratified_split(
    indices: np.ndarray, labels: np.ndarray, size: float | int, rng: np.random.Generator, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out): `size` reviews held out with the label balance of `indices`."""
    k = _count(size, len(indices), key)
    classes, sizes = np.unique(labels[indices], return_counts=True)
    # each label's share of k, rounded so the shares add up to k (largest remainders first):
    # rounding each alone held out none of 1 review, and 4 of 3
    shares = k * sizes / len(indices)
    quotas = np.floor(shares).astype(np.int64)
    quotas[np.argsort(quotas - shares, kind="stable")[: k - quotas.sum()]] += 1
    held = []
    for label, quota in zip(classes, quotas, strict=True):
        members = rng.permutation(indices[labels[indices] == label])
        held.append(members[:quota])
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(indices, held_out), held_out


def movie_split(
    indices: np.ndarray,
    labels: np.ndarray,
    movies: np.ndarray,
    size: float | int,
    rng: np.random.Generator,
    key: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out): whole movies held out, about `size` reviews with the label
    balance of `indices`. Movies are taken in random order while they fit both labels'
    quotas, so the held-out part may fall short of `size` by less than a movie's reviews
    (on IMDB it is exact: 2,500 reviews of 319 movies for the default 10%)."""
    k = _count(size, len(indices), key)
    positive = labels[indices] == 1
    quota = np.array([k - round(k * positive.mean()), round(k * positive.mean())])  # (neg, pos)
    ids, movie_of = np.unique(movies[indices], return_inverse=True)
    counts = np.zeros((len(ids), 2), dtype=np.int64)  # (movies, [neg, pos])
    np.add.at(counts, (movie_of, positive.astype(np.int64)), 1)
    taken, held = np.zeros(2, dtype=np.int64), np.zeros(len(ids), dtype=bool)
    for movie in rng.permutation(len(ids)):
        if (taken + counts[movie] <= quota).all():
            taken += counts[movie]
            held[movie] = True
            if (taken == quota).all():
                break
    held_out = indices[held[movie_of]]
    return np.setdiff1d(indices, held_out), held_out


def split_indices(
    labels: np.ndarray,
    is_test: np.ndarray,
    mode: str,
    val_size: float | int,
    test_size: float | int,
    seed: int,
    movies: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Indices of train/val/test. "official": IMDB's 25k/25k; "random": all 50k mixed.

    Validation is always carved from the training part (`val_size` 0: none, an empty
    array); the test part is never seen by model selection. With `movies` (an id per
    review), held-out parts are whole movies.
    """
    rng = np.random.default_rng(seed)
    everything = np.arange(len(labels))

    def hold_out(indices, size, key):
        if movies is None:
            return stratified_split(indices, labels, size, rng, key)
        return movie_split(indices, labels, movies, size, rng, key)

    if mode == "official":
        train, test = everything[~is_test], everything[is_test]
    else:
        train, test = hold_out(everything, test_size, "test_size")
    if val_size == 0:  # no validation: train on every training review (a final fit)
        return {"train": train, "val": train[:0], "test": test}
    train, val = hold_out(train, val_size, "val_size")
    if not len(val):  # whole movies: none small enough for so few reviews
        raise SentimentError(
            f"data.val_size={val_size} holds out no whole movie of the training reviews: use a larger "
            "data.val_size or data.split_by=review"
        )
    return {"train": train, "val": val, "test": test}
