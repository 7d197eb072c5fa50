"""Bag-of-n-grams: reviews as their words followed by their word pairs ("not good").

Bigrams become ordinary vocabulary entries (two words joined by a space), so the
vocabulary, encoding and multi-hot model work unchanged. Only bigrams seen at
least `min_count` times in the TRAINING reviews are kept; an unknown bigram is
dropped (never mapped to OOV), in training and in prediction alike.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lightning_sentiment.data.corpus import Corpus


def bigram_tokens(tokens: list[str]) -> list[str]:
    """["not", "good", "at", "all"] -> ["not good", "good at", "at all"]."""
    return [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


def with_bigrams(corpus: Corpus, train_idx: np.ndarray, min_count: int = 2) -> Corpus:
    """A corpus whose token table also holds the frequent training bigrams."""
    n_words = len(corpus.words)
    review_of_token = np.repeat(np.arange(len(corpus)), corpus.lengths)  # (total_tokens,)
    same_review = review_of_token[:-1] == review_of_token[1:]  # pairs inside one review
    first = np.flatnonzero(same_review)  # position of each pair's first token
    codes = corpus.token_ids[first].astype(np.int64) * n_words + corpus.token_ids[first + 1]
    in_train = np.zeros(len(corpus), dtype=bool)
    in_train[train_idx] = True
    kept_codes, counts = np.unique(codes[in_train[review_of_token[first]]], return_counts=True)
    kept_codes = kept_codes[counts >= min_count]  # sorted: ids stay in (first, second) word order
    slot = np.searchsorted(kept_codes, codes)
    found = np.zeros(len(codes), dtype=bool)
    if len(kept_codes):
        found = (slot < len(kept_codes)) & (kept_codes[np.minimum(slot, len(kept_codes) - 1)] == codes)
    pair_ids = (n_words + slot[found]).astype(np.int32)
    pair_review = review_of_token[first[found]]
    # Each review: its words, then its bigrams (a stable sort by review keeps that order).
    ids = np.concatenate([corpus.token_ids, pair_ids])
    order = np.argsort(np.concatenate([review_of_token, pair_review]), kind="stable")
    lengths = corpus.lengths + np.bincount(pair_review, minlength=len(corpus))
    words = corpus.words + [f"{corpus.words[c // n_words]} {corpus.words[c % n_words]}" for c in kept_codes]
    # the same reviews and metadata, with bigram ids after each review's words
    return replace(
        corpus, token_ids=ids[order], offsets=np.concatenate([[0], np.cumsum(lengths)]), words=words
    )
