"""Batches: padded only as far as needed, length-aware buckets, batched fetching."""

import numpy as np
import pytest
import torch

from lightning_sentiment.data.batching import BucketBatchSampler, EncodedReviews, PadCollate
from tests.helpers import make_dm


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
