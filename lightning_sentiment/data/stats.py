"""Dataset statistics for `data_stats.json`: sizes, lengths, OOV rates, truncation."""

from __future__ import annotations

import numpy as np


def review_names(corpus, indices: np.ndarray) -> list[str]:
    """Official file names, e.g. "test/pos/123_9.txt"."""
    return [
        f"{'test' if corpus.is_test[i] else 'train'}/{'pos' if corpus.labels[i] else 'neg'}/"
        f"{corpus.review_ids[i]}_{corpus.ratings[i]}.txt"
        for i in indices
    ]


def _lengths_summary(lengths: np.ndarray) -> dict:
    if len(lengths) == 0:
        return {}
    return {
        "mean": round(float(lengths.mean()), 2),
        "std": round(float(lengths.std()), 2),
        "median": float(np.median(lengths)),
        "p90": float(np.percentile(lengths, 90)),
        "max": int(lengths.max()),
    }


def data_stats(corpus, splits: dict, known_word: np.ndarray, vocab_size: int, max_len: int | None) -> dict:
    """Statistics per split; `known_word[w]` says whether corpus word w is in the vocabulary."""
    lengths = corpus.lengths
    review_of_token = np.repeat(np.arange(len(corpus)), lengths)
    token_known = known_word[corpus.token_ids]  # (total_tokens,)
    stats: dict = {
        "vocab_size": vocab_size,
        "distinct_words_in_corpus": len(corpus.words),
        "max_len": max_len,
        "invalid_utf8_reviews": corpus.n_invalid_utf8,
        "splits": {},
    }
    # each split's movies, as a set (-1: unknown); counted and compared with training below
    movies = {name: set(corpus.movies[d.indices].tolist()) - {-1} for name, d in splits.items()}
    for name, dataset in splits.items():
        idx = dataset.indices
        if not len(idx):  # no validation split (data.val_size=0)
            stats["splits"][name] = {"reviews": 0}
            continue
        labels = corpus.labels[idx]
        in_split = np.zeros(len(corpus), dtype=bool)
        in_split[idx] = True
        split_known = token_known[in_split[review_of_token]]
        stats["splits"][name] = {
            "reviews": len(idx),
            "positive": int(labels.sum()),
            "negative": int(len(idx) - labels.sum()),
            "tokens_per_review": _lengths_summary(lengths[idx]),
            "oov_rate": round(float(1 - split_known.mean()), 4) if split_known.size else 0.0,
            "truncated_share": round(float((lengths[idx] > max_len).mean()), 4) if max_len else 0.0,
            "movies": len(movies[name]),
        }
    if "train" in movies:  # movies a held-out part shares with training: 0 with data.split_by=movie
        for name in movies.keys() - {"train"}:
            if not stats["splits"][name]["reviews"]:
                continue
            stats["splits"][name]["movies_also_in_train"] = len(movies[name] & movies["train"])
    return stats
