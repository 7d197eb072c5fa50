"""MultiHotMLP: its dense and bag paths, naive-Bayes weights, distinct-id rows."""

import numpy as np
import pytest
import torch

from lightning_sentiment.data.batching import EncodedReviews
from lightning_sentiment.data.text import pad_sequences
from lightning_sentiment.models import MultiHotMLP
from lightning_sentiment.models import mlp as mlp_module
from lightning_sentiment.models.mlp import flat_ids
from tests.helpers import padded, quiet_trainer


def dense_first_layer(net: MultiHotMLP, tokens: torch.Tensor, binary: bool) -> torch.Tensor:
    """The textbook multi-hot: a (B, vocab) matrix times the first layer's weights."""
    vocab = net.first.weight.shape[0]
    hot = torch.zeros(tokens.shape[0], vocab)
    hot.scatter_add_(1, tokens, torch.ones_like(tokens, dtype=torch.float))
    hot[:, 0] = 0  # padding is no word
    if binary:
        hot = (hot > 0).float()
    return hot @ net.first.weight + net.first_bias  # (B, vocab) @ (vocab, H)


@pytest.fixture(params=["dense", "bag"])
def first_layer(request, monkeypatch):
    """Run a test through both first-layer paths of MultiHotMLP."""
    if request.param == "bag":
        monkeypatch.setattr(mlp_module, "DENSE_MAX_VOCAB", 0)
    return request.param


@pytest.mark.parametrize("weighting", ["binary", "count"])
def test_multi_hot_mlp_equals_dense_product(weighting, first_layer):
    torch.manual_seed(0)
    net = MultiHotMLP(vocab_size=50, hidden_dims=[8, 4], weighting=weighting).eval()
    tokens = torch.randint(0, 50, (6, 30))
    tokens[0, :] = 0  # an empty review
    tokens[1, :10] = 7  # many repeats
    expected = net.rest(dense_first_layer(net, tokens, binary=weighting == "binary")).squeeze(-1)
    torch.testing.assert_close(net(tokens), expected)
    if weighting == "binary":  # repeats change nothing for a multi-hot
        once = tokens.clone()
        once[1, 1:10] = 0
        torch.testing.assert_close(net(once), net(tokens))


def test_naive_bayes_weights_and_forward(first_layer):
    """r = log of the add-one review frequencies' ratio; the input is multi-hot x r."""
    # reviews: [1 2 2] pos, [1 3] neg, [4 4 4 1] pos (pre-truncated to max_len 2: [4 1])
    ids = np.array([1, 2, 2, 1, 3, 4, 4, 4, 1], dtype=np.int32)
    offsets, labels = np.array([0, 3, 5, 9]), np.array([1, 0, 1])
    data = EncodedReviews(ids, offsets, labels, np.arange(3), max_len=2, truncating="pre")
    reviews, present = data.presence()
    assert list(zip(reviews.tolist(), present.tolist(), strict=True)) == [
        (0, 2),
        (1, 1),
        (1, 3),
        (2, 1),
        (2, 4),
    ]
    net = MultiHotMLP(vocab_size=5, hidden_dims=[3], weighting="nb").eval()
    net.fit_to_data(data)
    p = 1 + np.array([0, 1, 1, 0, 1])  # reviews containing each id: positives (truncated)
    q = 1 + np.array([0, 1, 0, 1, 0])  # negatives
    expected = np.log(p / p.sum()) - np.log(q / q.sum())
    torch.testing.assert_close(net.feature_weight, torch.tensor(expected, dtype=torch.float32))
    tokens = torch.tensor([[0, 4, 2, 2], [1, 3, 0, 0]])
    hot = dense_first_layer(net, tokens, binary=True) - net.first_bias  # (B, H) multi-hot product
    scaled = torch.stack(
        [
            (net.first.weight[t[t > 0].unique()] * net.feature_weight[t[t > 0].unique(), None]).sum(0)
            for t in tokens
        ]
    )
    assert not torch.allclose(hot, scaled)  # the weighting changes the first layer's input
    torch.testing.assert_close(net(tokens), net.rest(scaled + net.first_bias).squeeze(-1))


@pytest.mark.parametrize("weighting", ["binary", "count", "nb"])
def test_mlp_dense_and_bag_paths_agree(weighting, monkeypatch):
    """Same logits and gradients whichever way the first layer is computed."""
    torch.manual_seed(0)
    net = MultiHotMLP(vocab_size=40, hidden_dims=[6, 3], weighting=weighting)
    if weighting == "nb":
        net.feature_weight.uniform_(-2, 2)
    tokens = torch.randint(0, 40, (5, 25))
    tokens[2] = 0  # an empty review: no ids in the bag, no gradient from it
    grads = []
    for limit in (10**9, 0):  # dense, then bag
        monkeypatch.setattr(mlp_module, "DENSE_MAX_VOCAB", limit)
        net.zero_grad()
        out = net(tokens)
        out.sum().backward()
        grads.append((out.detach(), net.first.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


@pytest.mark.parametrize("vocab_size", [40, 2**20, 2**32])  # sorted as uint16, int32, int64
def test_flat_ids_lists_each_rows_ids(vocab_size):
    torch.manual_seed(0)
    tokens = torch.randint(0, 40, (4, 30))
    tokens[1] = 0  # an empty review
    tokens[3, :12] = 39  # repeats
    ids, counts = flat_ids(tokens, vocab_size, distinct=True)
    rows = mlp_module.rows_of(counts, len(ids))
    for r, row in enumerate(tokens):
        assert ids[rows == r].tolist() == row[row > 0].unique().tolist()  # ascending, once each
    assert counts.tolist() == [len(row[row > 0].unique()) for row in tokens]
    ids, counts = flat_ids(tokens, vocab_size, distinct=False)
    assert ids.tolist() == tokens[tokens > 0].tolist()  # every occurrence, row after row
    assert ids.dtype == torch.int64
    expected_rows = sum(([r] * int((row > 0).sum()) for r, row in enumerate(tokens)), [])
    assert mlp_module.rows_of(counts, len(ids)).tolist() == expected_rows


def test_bag_rows_are_made_only_for_backward(monkeypatch):
    """Each id's row is needed by the bag's backward alone: evaluation (no gradient)
    never builds it, a training step builds it once."""
    made = []
    real_rows_of = mlp_module.rows_of
    monkeypatch.setattr(mlp_module, "rows_of", lambda *a: made.append(1) or real_rows_of(*a))
    monkeypatch.setattr(mlp_module, "DENSE_MAX_VOCAB", 0)  # the bag path at any vocabulary
    torch.manual_seed(0)
    net = MultiHotMLP(vocab_size=50, hidden_units=4)
    tokens = torch.randint(0, 50, (3, 9))
    with torch.no_grad():
        net(tokens)
    assert made == []
    net(tokens).sum().backward()
    assert made == [1]
    assert net.first.weight.grad[tokens[0, -1]].abs().sum() > 0


def test_sort_rows_keeps_ids_beyond_int32():
    """Rows are sorted in the narrowest type that holds the vocabulary's ids: uint16,
    int32, then int64, and no id wraps around."""
    tokens = torch.tensor([[2**33 + 1, 5, 0], [7, 2**32, 7]])
    assert mlp_module.sort_rows(tokens, 2**34).tolist() == [[0, 5, 2**33 + 1], [7, 7, 2**32]]
    small = torch.tensor([[65_535, 3, 0, 40_000], [7, 7, 1, 2]])
    assert mlp_module.sort_rows(small, 2**16).tolist() == [[0, 3, 40_000, 65_535], [1, 2, 7, 7]]
    assert mlp_module.sort_rows(small, 2**16).dtype == np.uint16
    assert mlp_module.sort_rows(small + 2**16, 2**17).tolist() == (small.sort(1).values + 2**16).tolist()
    assert mlp_module.sort_rows(small, 2**17).dtype == np.int32


def test_flat_ids_rejects_ids_beyond_the_vocabulary():
    """An id beyond the vocabulary is refused by name, not left to an index error deep
    in the bag (or to wrap around in the int32 sort)."""
    with pytest.raises(IndexError, match="token id 41 is out of range for a vocabulary of 40"):
        flat_ids(torch.tensor([[3, 41], [1, 2]]), 40, distinct=True)


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_distinct_rows_are_only_flattened_and_give_the_same_ids(padding, monkeypatch):
    """Rows that ascend strictly (data.distinct=true) skip the sort; the result is what
    the sort would give. Rows with a repeat or out of order still take it."""
    torch.manual_seed(0)
    raw = torch.randint(0, 40, (6, 30))
    raw[1] = 0  # an empty review
    sets = [row[row > 0].unique() for row in raw]  # ascending, once each
    distinct = torch.from_numpy(pad_sequences([s.numpy() for s in sets], padding=padding))
    assert mlp_module.rows_distinct(distinct)
    assert not mlp_module.rows_distinct(raw)
    assert not mlp_module.rows_distinct(torch.tensor([[0, 3, 5, 0, 5]]))  # a repeat after padding
    assert not mlp_module.rows_distinct(torch.tensor([[2, 7, 4]]))  # out of order
    assert not mlp_module.rows_distinct(torch.tensor([[1, 2, 3], [0, 4, 4]]))  # only a later row repeats
    expected = flat_ids(raw, 40, distinct=True)
    sorts = []
    real_sort = mlp_module.sort_rows
    monkeypatch.setattr(mlp_module, "sort_rows", lambda *a: sorts.append(1) or real_sort(*a))
    assert torch.equal(flat_ids(raw, 40, distinct=True)[0], expected[0])
    assert sorts == [1]  # the patch sees the sort of rows that are not distinct
    got = flat_ids(distinct, 40, distinct=True)
    assert sorts == [1]  # flattened, not sorted
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_distinct_data_needs_a_model_that_reads_sets(train_cfg, tmp_path):
    from hydra.utils import instantiate

    from lightning_sentiment import SentimentError

    for overrides, net in (
        (["model=lstm"], "LSTMClassifier"),
        (["model=mlp", "model.net.weighting=count"], "MultiHotMLP"),
    ):
        cfg = train_cfg([*overrides, "data.distinct=true"])
        datamodule, model = instantiate(cfg.data), instantiate(cfg.model, _recursive_=False)
        with pytest.raises(SentimentError, match=f"data.distinct=true .* {net} needs word order or counts"):
            quiet_trainer(fast_dev_run=1, default_root_dir=tmp_path).fit(model, datamodule=datamodule)


def test_mlp_padding_invariance():
    net = MultiHotMLP(vocab_size=10, hidden_dims=[4]).eval()
    torch.testing.assert_close(net(padded(7, "pre")), net(padded(15, "post")))
