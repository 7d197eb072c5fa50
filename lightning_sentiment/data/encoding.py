"""The vocabulary of the training reviews, and corpus word ids turned into its ids."""

from __future__ import annotations

import numpy as np

from lightning_sentiment.data.corpus import Corpus
from lightning_sentiment.data.text import Vocabulary


def build_vocab(
    corpus: Corpus, train_idx: np.ndarray, vocab_size: int, oov_token: str | None
) -> tuple[Vocabulary, np.ndarray]:
    """The most frequent training words (ties go to the alphabetically first word),
    and their ids in the corpus. `vocab_size` counts padding and OOV, as Keras'
    `num_words` does."""
    in_train = np.zeros(len(corpus), dtype=bool)
    in_train[train_idx] = True
    token_in_train = np.repeat(in_train, corpus.lengths)  # (total_tokens,)
    counts = np.bincount(corpus.token_ids[token_in_train], minlength=len(corpus.words))
    order = np.argsort(-counts, kind="stable")  # word ids are alphabetical: stable = ties
    slots = vocab_size - 1 - (1 if oov_token else 0)
    keep = order[: min(slots, int((counts > 0).sum()))]
    return Vocabulary([corpus.words[i] for i in keep], oov_token), keep


def encode(
    corpus: Corpus, vocab: Vocabulary, words: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corpus word ids -> vocabulary ids (ids, offsets), unknown words to OOV or dropped;
    and which corpus words (n_words,) the vocabulary knows. `words`: how many of the
    corpus' words are words; bigrams come after them.

    rows: the corpus ids of the vocabulary's words when it was built from this corpus:
    the table is then filled without looking up each of the corpus' words by name
    (0.7 s for the default MLP's 520k words and bigrams).
    """
    if rows is None:  # a vocabulary from elsewhere (a checkpoint): by name
        index = vocab.index
        lookup = np.array([index[w] if w in index else vocab.unknown_id(w) for w in corpus.words], np.int32)
    else:  # as `Vocabulary.unknown_id`: unknown words to OOV or dropped, bigrams dropped
        unknown = -1 if vocab.oov_id is None else vocab.oov_id
        lookup = np.full(len(corpus.words), unknown, np.int32)
        lookup[words:] = -1
        lookup[rows] = np.arange(len(vocab) - len(rows), len(vocab))
    known_word = lookup > (vocab.oov_id or 0)  # (n_words,) in the vocabulary
    ids = lookup[corpus.token_ids]
    if not (lookup == -1).any():
        return ids, corpus.offsets, known_word
    dropped = np.flatnonzero(ids == -1)  # ascending token positions
    before = np.searchsorted(dropped, corpus.offsets)  # (N + 1,) dropped before each review
    return np.delete(ids, dropped), corpus.offsets - before, known_word
