"""`SentimentDataModule`: IMDB reading, tokenization, vocabulary, splits and batching."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lightning_sentiment.data import imdb, ngrams
from lightning_sentiment.data.batching import (
    BucketBatchSampler,
    EncodedReviews,
    PadCollate,
    ShardSampler,
    distinct_ids,
    rank_and_world,
)
from lightning_sentiment.data.corpus import Corpus, cache_path, load_or_build
from lightning_sentiment.data.encoding import build_vocab, encode
from lightning_sentiment.data.settings import check_data_settings
from lightning_sentiment.data.splits import split_indices
from lightning_sentiment.data.stats import data_stats
from lightning_sentiment.data.text import KERAS_FILTERS, Tokenizer, Vocabulary
from lightning_sentiment.errors import SentimentError

log = logging.getLogger(__name__)


class SentimentDataModule(pl.LightningDataModule):
    """IMDB as padded id batches; every preprocessing knob of the Keras tutorials.

    `vocab_size` counts every id, padding (0) and OOV (1) included, like Keras'
    `num_words`; without `oov_token`, unknown words are dropped as Keras does.
    `distinct`: each review becomes its distinct ids, ascending (after truncation), once
    at setup: all a multi-hot model reads, and the MLP then skips its per-batch dedupe.
    """

    def __init__(
        self,
        data_dir: str = "data",
        archive: str | None = None,
        download_url: str = imdb.OFFICIAL_URL,
        download_sha256: str | None = imdb.OFFICIAL_SHA256,
        cache: bool = True,
        vocab_size: int = 20000,
        oov_token: str | None = "<unk>",
        max_len: int | None = 500,
        padding: str = "pre",
        truncating: str = "pre",
        lowercase: bool = True,
        filters: str = KERAS_FILTERS,
        strip_html: bool = True,
        split_chars: str = "",
        ngrams: int = 1,
        ngram_min_count: int = 2,
        distinct: bool = False,
        split: str = "official",
        split_by: str = "review",
        val_size: float | int = 0.1,
        test_size: float | int = 0.25,
        seed: int = 42,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        bucket: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        check_data_settings({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.save_hyperparameters(logger=False)
        self.tokenizer = Tokenizer(lowercase, filters, strip_html, split_chars)
        self.vocab: Vocabulary | None = None
        self.corpus: Corpus | None = None
        self.splits: dict[str, EncodedReviews] = {}
        self.stats: dict = {}

    # -- preparation -------------------------------------------------------------
    def source(self) -> Path:
        """The folder or archive to read, downloading the official archive if needed."""
        hp = self.hparams
        found = imdb.locate(hp.data_dir, hp.archive)
        if found is not None:
            return found
        return imdb.download(hp.download_url, Path(hp.data_dir) / imdb.ARCHIVE_NAMES[0], hp.download_sha256)

    def cache_dir(self) -> Path | None:
        return Path(self.hparams.data_dir) / "cache" if self.hparams.cache else None

    def prepare_data(self) -> None:
        """Download and tokenize once (rank 0); the result is cached on disk."""
        if self.corpus is None:
            # as many tokenizing processes as torch threads: sweep jobs split the cores
            workers = torch.get_num_threads()
            self.corpus = load_or_build(self.source(), self.tokenizer, self.cache_dir(), workers)

    def setup(self, stage: str | None = None) -> None:
        """Split, build the vocabulary from the training reviews, encode. Safe to call twice."""
        if self.splits:
            return
        self.prepare_data()
        corpus, hp = self.corpus, self.hparams
        movies = corpus.movies if hp.split_by == "movie" else None
        if movies is not None and (movies < 0).any():
            raise SentimentError(
                f"data.split_by=movie needs the movie of every review, and {int((movies < 0).sum())} have "
                "none (aclImdb/{train,test}/urls_{pos,neg}.txt missing or short): use data.split_by=review"
            )
        index = split_indices(
            corpus.labels, corpus.is_test, hp.split, hp.val_size, hp.test_size, hp.seed, movies
        )
        tokens = self._with_bigrams(corpus, index["train"]) if hp.ngrams == 2 else corpus
        rows = None  # the corpus ids of a vocabulary built here, in vocabulary order
        if self.vocab is None:
            self.vocab, rows = build_vocab(tokens, index["train"], hp.vocab_size, hp.oov_token)
        # _known_word: which of the corpus' words (bigrams too) the vocabulary knows
        ids, offsets, self._known_word = encode(tokens, self.vocab, len(corpus.words), rows)
        for name, idx in index.items():
            self.splits[name] = EncodedReviews(ids, offsets, corpus.labels, idx, hp.max_len, hp.truncating)
        known_word = self._known_word[: len(corpus.words)]  # the words; bigrams come after them
        self.stats = data_stats(corpus, self.splits, known_word, len(self.vocab), hp.max_len)
        log.info("IMDB data: %s", json.dumps(self.stats))
        if hp.distinct:  # after the stats, which describe the reviews as read
            ids, offsets = distinct_ids(ids, offsets, hp.max_len, hp.truncating)
            for name, idx in index.items():  # truncated already: max_len None
                self.splits[name] = EncodedReviews(ids, offsets, corpus.labels, idx, None, hp.truncating)

    def _with_bigrams(self, corpus: Corpus, train_idx: np.ndarray) -> Corpus:
        """Words and frequent training bigrams, cached beside the corpus: they depend on
        the split, so each split and `ngram_min_count` has its own file."""
        cache_dir, min_count = self.cache_dir(), self.hparams.ngram_min_count
        path = None
        if cache_dir is not None:
            corpus_cache = cache_path(cache_dir, self.source(), self.tokenizer)
            path = ngrams.cache_path(corpus_cache, train_idx, min_count)
        return ngrams.load_or_build(corpus, train_idx, min_count, path)

    # -- loaders ----------------------------------------------------------------------
    def _loader(self, name: str, train: bool) -> DataLoader:
        hp, dataset = self.hparams, self.splits[name]
        batch_size = hp.batch_size if train else hp.eval_batch_size
        if hp.bucket:
            sampler = BucketBatchSampler(dataset.lengths(), batch_size, shuffle=train, seed=hp.seed)
            batching = {"batch_sampler": sampler}
        elif rank_and_world()[1] > 1:  # DDP: this rank's share (Lightning's sampler is off)
            batching = {"batch_size": batch_size, "sampler": ShardSampler(len(dataset), train, hp.seed)}
        else:
            batching = {"batch_size": batch_size, "shuffle": train}
        return DataLoader(
            dataset,
            collate_fn=PadCollate(hp.padding),
            # Its own generator: loaders never draw from the global RNG that dropout uses,
            # so a run resumed from a checkpoint replays the same random numbers.
            generator=torch.Generator().manual_seed(hp.seed),
            num_workers=hp.num_workers,
            pin_memory=hp.pin_memory,
            persistent_workers=hp.num_workers > 0,
            **batching,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def has_validation(self) -> bool:
        """False with data.val_size=0 (a final fit on every training review)."""
        return self.hparams.val_size != 0

    def val_dataloader(self) -> DataLoader | list:
        # no validation split: an empty list, which Lightning reads as no validation loop
        return self._loader("val", train=False) if self.has_validation() else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Our batches are tuples of tensors: moved one by one, not walked as a general
        collection by Lightning (an ABC `isinstance` check per element, ~20 us a step).
        Here, not on the LightningModule: Lightning takes the datamodule's hook, and
        warns when only the module has one."""
        if type(batch) in (tuple, list) and all(type(t) is torch.Tensor for t in batch):
            non_blocking = device.type not in ("cpu", "mps")  # as Lightning: blocking copies there
            return type(batch)(t.to(device, non_blocking=non_blocking) for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # -- what travels inside checkpoints --------------------------------------------
    def preprocessing(self) -> dict:
        """Everything prediction needs to turn new text into the same ids."""
        hp = self.hparams
        return {
            **self.tokenizer.settings(),
            "max_len": hp.max_len,
            "padding": hp.padding,
            "truncating": hp.truncating,
            "ngrams": hp.ngrams,
        }

    def state_dict(self) -> dict:
        if self.vocab is None:
            return {}
        return {"vocab": self.vocab.state_dict(), "preprocessing": self.preprocessing()}

    def load_state_dict(self, state: dict) -> None:
        """Lightning restores this after `setup`: refuse a checkpoint of another vocabulary."""
        if not state or "vocab" not in state:
            return
        theirs = Vocabulary.from_state_dict(state["vocab"])
        if self.vocab is not None and theirs != self.vocab:
            raise SentimentError(
                f"the checkpoint was trained with another vocabulary ({len(theirs)} ids, this run "
                f"builds {len(self.vocab)}): use the data settings it was trained with"
            )
        self.vocab = theirs
