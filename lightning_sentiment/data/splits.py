"""Train / validation / test index splits, stratified by label and seeded."""

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
    held = []
    for label in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == label])
        held.append(members[: int(round(k * len(members) / len(indices)))])
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(indices, held_out), held_out


def split_indices(
    labels: np.ndarray,
    is_test: np.ndarray,
    mode: str,
    val_size: float | int,
    test_size: float | int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Indices of train/val/test. "official": IMDB's 25k/25k; "random": all 50k mixed.

    Validation is always carved from the training part; the test part is never seen
    by model selection.
    """
    rng = np.random.default_rng(seed)
    everything = np.arange(len(labels))
    if mode == "official":
        train, test = everything[~is_test], everything[is_test]
    else:
        train, test = stratified_split(everything, labels, test_size, rng, "test_size")
    train, val = stratified_split(train, labels, val_size, rng, "val_size")
    return {"train": train, "val": val, "test": test}
