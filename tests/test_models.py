import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_sentiment.data.batching import EncodedReviews
from lightning_sentiment.data.text import pad_sequences
from lightning_sentiment.errors import SettingError
from lightning_sentiment.models import LSTMClassifier, MultiHotMLP, SentimentClassifier
from lightning_sentiment.models import mlp as mlp_module
from lightning_sentiment.models.mlp import flat_ids
from lightning_sentiment.models.pooling import Pooling
from lightning_sentiment.models.sequences import left_align, reverse_within, split_segments
from tests.helpers import quiet_trainer

REVIEWS = [torch.tensor([5, 3, 9, 2]), torch.tensor([7]), torch.tensor([4, 4, 8, 1, 6, 2, 3])]


def padded(width: int, padding: str) -> torch.Tensor:
    return torch.from_numpy(pad_sequences([r.numpy() for r in REVIEWS], maxlen=width, padding=padding))


def test_left_align_and_reverse_within():
    tokens = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4], [0, 5, 6, 7]])
    aligned, lengths = left_align(tokens)
    assert aligned.tolist() == [[3, 4, 0, 0], [1, 2, 3, 4], [5, 6, 7, 0]] and lengths.tolist() == [2, 4, 3]
    rev = reverse_within(aligned[:, :, None].float(), lengths)[:, :, 0]
    assert rev.tolist() == [[4, 3, 0, 0], [4, 3, 2, 1], [7, 6, 5, 0]]
    full = aligned[1:2, :, None].float().requires_grad_()  # no padding: the flip path
    flipped = reverse_within(full, lengths[1:2])
    assert flipped[:, :, 0].tolist() == [[4, 3, 2, 1]]
    flipped.backward(torch.arange(4.0)[None, :, None])
    assert full.grad[:, :, 0].tolist() == [[3, 2, 1, 0]]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "max", "mean", "max_mean", "max_mean_attn"])
@pytest.mark.parametrize("keras_bias", [False, True])
def test_lstm_padding_invariance(bidirectional, pooling, keras_bias):
    torch.manual_seed(0)
    net = LSTMClassifier(
        vocab_size=10,
        embed_dim=8,
        hidden_dim=6,
        num_layers=2,
        bidirectional=bidirectional,
        pooling=pooling,
        dense_dim=5,
        keras_bias=keras_bias,
        init="keras" if keras_bias else "torch",
    ).eval()
    with torch.no_grad():
        reference = net(padded(7, "post"))
        for width, padding in ((7, "pre"), (12, "pre"), (20, "post")):
            torch.testing.assert_close(net(padded(width, padding)), reference, rtol=1e-5, atol=1e-6)
        # and each review alone, unpadded
        alone = torch.stack([net(r[None])[0] for r in REVIEWS])
    torch.testing.assert_close(alone, reference, rtol=1e-5, atol=1e-6)
    assert reference.shape == (3,)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["max", "mean", "max_mean", "max_mean_attn"])
def test_chunked_lstm_pools_independent_segments(bidirectional, pooling):
    """chunk=3: each review is read as segments of 3 tokens, each from a fresh state, and
    the review's features are the segments' features pooled as one sequence."""
    torch.manual_seed(0)
    net = LSTMClassifier(10, 8, 6, num_layers=2, bidirectional=bidirectional, pooling=pooling)
    net.eval()
    features = []
    net.head.register_forward_hook(lambda mod, inp, out: features.append(inp[0]))
    with torch.no_grad():
        whole = net(padded(7, "pre"))
        net.chunk = 7  # one segment a review: same as reading it whole
        torch.testing.assert_close(net(padded(9, "post")), whole, rtol=1e-5, atol=1e-6)
        net.chunk = 3
        chunked = net(padded(7, "pre"))
        for width, padding in ((8, "post"), (12, "pre")):  # padding-invariant too
            torch.testing.assert_close(net(padded(width, padding)), chunked, rtol=1e-5, atol=1e-6)
        review = REVIEWS[2]  # 7 tokens: segments of 3, 3 and 1
        net.chunk = None
        net(torch.stack([review[:3], review[3:6], torch.tensor([review[6], 0, 0])]))
    segments, lengths, got = features[-1], torch.tensor([3.0, 3.0, 1.0]), features[2][2]
    if pooling.startswith("max_mean"):  # each segment's [max, mean]: maxes of maxes, length-weighted means
        high, mean = segments.chunk(len(net.pool.kinds), dim=1)[:2]
        expected = torch.cat([high.amax(0), (mean * lengths[:, None]).sum(0) / 7])
        got = got[: expected.shape[0]]  # attention's merge: test_pooling_merges_segments_as_one_sequence
    else:
        expected = segments.amax(0) if pooling == "max" else (segments * lengths[:, None]).sum(0) / 7
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(chunked, whole)


@pytest.mark.parametrize("pooling", ["max", "mean", "attn", "max_mean_attn"])
def test_pooling_merges_segments_as_one_sequence(pooling):
    """States cut into segments (padded), pooled a segment, then merged, give the
    features of pooling the states whole: for attention, the softmax over all steps."""
    torch.manual_seed(0)
    pool = Pooling(pooling, hidden_dim=4, directions=2)
    states = [torch.randn(2, 7, 4) for _ in range(2)]  # two reviews of 7 and 5 steps, 2 directions
    lengths = torch.tensor([7, 5])
    whole = pool.features(pool(states, lengths))  # (2, F)
    # segments of 3: review 0 -> steps 0-2, 3-5, 6; review 1 -> 0-2, 3-4 (slots in a 2 x 3 grid)
    cuts = [(0, 0, 3), (0, 3, 6), (0, 6, 7), (1, 0, 3), (1, 3, 5)]
    segments = [torch.zeros(5, 3, 4) for _ in range(2)]
    for d in range(2):
        for s, (review, start, end) in enumerate(cuts):
            segments[d][s, : end - start] = states[d][review, start:end]
    seg_lengths = torch.tensor([3, 3, 1, 3, 2])
    merged = pool.merge(pool(segments, seg_lengths), seg_lengths, torch.tensor([0, 1, 2, 3, 4]), 2, 3)
    torch.testing.assert_close(merged, whole)
    assert whole.shape == (2, 4 * 2 * len(pool.kinds))
    if "attn" in pool.kinds:  # a weighted mean of real steps only: padding changes nothing
        states[0][1, 5:] = 1e3
        torch.testing.assert_close(pool.features(pool(states, lengths)), whole)


def test_split_segments_with_a_shorter_first_segment():
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6, 7], [8, 9, 0, 0, 0, 0, 0]])
    segments, lengths, slots, n = split_segments(tokens, torch.tensor([7, 2]), chunk=3, first=1)
    # review 0: [1], [2 3 4], [5 6 7]; review 1: [8], [9]; slots in a (2 * 3) grid
    assert n == 3 and slots.tolist() == [0, 1, 2, 3, 4] and lengths.tolist() == [1, 3, 3, 1, 1]
    assert segments.tolist() == [[1, 0, 0], [2, 3, 4], [5, 6, 7], [8, 0, 0], [9, 0, 0]]
    default = split_segments(tokens, torch.tensor([7, 2]), chunk=3)  # first = chunk
    assert default[0].tolist() == [[1, 2, 3], [4, 5, 6], [7, 0, 0], [8, 9, 0]] and default[3] == 3


@pytest.mark.parametrize("bidirectional", [False, True])
def test_shifted_eval_averages_two_readings_in_evaluation_only(bidirectional):
    """shifted_eval: evaluation averages the logits of the usual segments and of segments
    whose boundaries moved by half a segment; training reads only the usual ones."""
    torch.manual_seed(0)
    net = LSTMClassifier(10, 8, 6, bidirectional=bidirectional, pooling="max", chunk=4)
    review = REVIEWS[2]  # 7 tokens: usual segments 4 + 3, shifted 2 + 4 + 1
    with torch.no_grad():
        net.eval()
        usual = net(review[None])
        net.chunk = None
        parts = [review[:2], review[2:6], review[6:]]
        features = [net._features(p[None], torch.tensor([len(p)])) for p in parts]  # (1, F) each
        shifted = net.head(torch.stack(features).amax(0))
        net.chunk, net.shifted_eval = 4, True
        expected = (usual + shifted.squeeze(-1)) / 2
        torch.testing.assert_close(net(review[None]), expected, rtol=1e-5, atol=1e-6)
        reference = net(padded(7, "post"))
        for width, padding in ((9, "pre"), (12, "post")):  # still padding-invariant
            torch.testing.assert_close(net(padded(width, padding)), reference, rtol=1e-5, atol=1e-6)
        net.train()  # no dropout here: training mode differs only in the reading
        torch.testing.assert_close(net(review[None]), usual)
    assert not torch.allclose(expected, usual)


def test_random_offsets_move_segment_boundaries_in_training_only():
    """random_offsets: each training batch cuts the reviews with a first segment of a
    random 1..chunk tokens (seeded); evaluation always reads the usual segments."""
    torch.manual_seed(0)
    net = LSTMClassifier(10, 8, 6, pooling="max", chunk=4, random_offsets=True)
    seen = []
    net.forward_layers[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    review = REVIEWS[2][None]  # 7 tokens
    with torch.no_grad():
        net.eval()
        usual = net(review)
        assert seen[-1].shape[0] == 2  # segments 4 + 3
        net.train()  # no dropout here: training differs only in where the segments start
        torch.manual_seed(1)
        firsts = [int(torch.randint(1, 5, ())) for _ in range(12)]
        torch.manual_seed(1)
        trained = [net(review) for _ in range(12)]
        # a first segment of f < 4 tokens gives 1 + ceil((7 - f) / 4) segments
        counts = [s.shape[0] for s in seen[-12:]]
        assert counts == [2 if f == 4 else 1 + -(-(7 - f) // 4) for f in firsts]
        assert len(set(firsts)) > 1
        for f, logit in zip(firsts, trained, strict=True):
            assert torch.allclose(logit, usual) == (f == 4)
        net.eval()
        torch.testing.assert_close(net(review), usual)


def hinted_copies(net: LSTMClassifier) -> tuple[LSTMClassifier, LSTMClassifier]:
    """Plain LSTMs with net's weights: one reading forward, one whose every embedding
    carries net's backward hint (padding's too: never read before a real token)."""
    forward, backward = (LSTMClassifier(10, 8, 6, pooling="max_mean", chunk=3) for _ in range(2))
    for copy in (forward, backward):
        copy.load_state_dict({k: v for k, v in net.state_dict().items() if k != "backward_hint"})
    with torch.no_grad():
        backward.embedding.weight += net.backward_hint
    return forward, backward


def test_reversed_reading_averages_both_ways_in_evaluation():
    """reversed_reading: evaluation averages the review read forwards and read last word
    first with the learned hint added; padding-invariant like the plain LSTM."""
    torch.manual_seed(0)
    net = LSTMClassifier(10, 8, 6, pooling="max_mean", chunk=3, reversed_reading=True)
    with torch.no_grad():
        net.backward_hint.normal_()  # a hint that changes the result
    forward, backward = hinted_copies(net)
    net.eval(), forward.eval(), backward.eval()
    with torch.no_grad():
        expected = torch.stack([(forward(r[None]) + backward(r.flip(0)[None])) / 2 for r in REVIEWS])
        reference = net(padded(7, "post"))
        torch.testing.assert_close(reference, expected.squeeze(1), rtol=1e-5, atol=1e-6)
        for width, padding in ((9, "pre"), (12, "post")):
            torch.testing.assert_close(net(padded(width, padding)), reference, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(reference, forward(padded(7, "post")))


def test_reversed_reading_trains_on_a_random_half_of_the_reviews_backwards():
    """In training each review is read one way, backwards with probability 1/2 (a seeded
    CPU draw), and the hint learns."""
    torch.manual_seed(0)
    net = LSTMClassifier(10, 8, 6, pooling="max_mean", chunk=3, reversed_reading=True)
    with torch.no_grad():
        net.backward_hint.normal_()
    forward, backward = hinted_copies(net)
    batch = padded(7, "post").repeat(4, 1)  # 12 reviews
    torch.manual_seed(3)
    ways = (torch.rand(12) < 0.5).tolist()
    torch.manual_seed(3)
    net.train()  # no dropout here: training differs only in the way each review is read
    logits = net(batch)
    assert 0 < sum(ways) < 12
    with torch.no_grad():
        for row, way in enumerate(ways):
            review = REVIEWS[row % 3]
            one = backward(review.flip(0)[None]) if way else forward(review[None])
            torch.testing.assert_close(logits[row : row + 1].detach(), one, rtol=1e-5, atol=1e-6)
    logits.sum().backward()
    assert net.backward_hint.grad.abs().sum() > 0


def test_reversed_reading_is_for_one_direction():
    with pytest.raises(ValueError, match="reversed_reading=true is for a one-direction LSTM"):
        LSTMClassifier(10, 4, 4, bidirectional=True, reversed_reading=True)


def test_chunk_and_word_dropout_arguments_are_checked():
    with pytest.raises(ValueError, match="model.net.chunk=4 needs a pooling other than last"):
        LSTMClassifier(10, 4, 4, pooling="last", chunk=4)
    with pytest.raises(ValueError, match="word_dropout=1.0"):
        LSTMClassifier(10, 4, 4, word_dropout=1.0)


def test_word_dropout_zeroes_whole_words_in_training_only():
    torch.manual_seed(0)
    net = LSTMClassifier(10, 8, 6, pooling="max", dropout=0.0, word_dropout=0.5)
    seen = []
    net.forward_layers[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    tokens = torch.randint(1, 10, (4, 50))
    net.train()(tokens)
    net.eval()(tokens)
    dropped = (seen[0] == 0).all(-1)  # (B, T): words whose whole embedding is zero
    assert 0.35 < dropped.float().mean() < 0.65
    kept = ~dropped
    torch.testing.assert_close(seen[0][kept], 2 * seen[1][kept])  # scaled by 1 / (1 - p)
    assert not (seen[1] == 0).all(-1).any()


def test_bidirectional_reads_both_ways():
    torch.manual_seed(0)
    net = LSTMClassifier(vocab_size=10, embed_dim=4, hidden_dim=3, bidirectional=True).eval()
    with torch.no_grad():
        a = net(torch.tensor([[1, 2, 3]]))
        b = net(torch.tensor([[3, 2, 1]]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("pooling", ["last", "max", "mean", "max_mean"])
def test_bidirectional_features_equal_torch_bidirectional_lstm(pooling):
    """Against torch's own bidirectional LSTM on each review unpadded: a batch of equal
    lengths (the flip path) and one with padding (the indexed path)."""
    torch.manual_seed(0)
    net = LSTMClassifier(vocab_size=20, embed_dim=4, hidden_dim=3, bidirectional=True, pooling=pooling).eval()
    ref = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    fwd, bwd = net.forward_layers[0], net.backward_layers[0]
    with torch.no_grad():
        for name, value in fwd.named_parameters():
            getattr(ref, name).copy_(value)
            getattr(ref, f"{name}_reverse").copy_(getattr(bwd, name))

    def reference(review: torch.Tensor) -> torch.Tensor:
        out = ref(net.embedding(review[None]))[0][0]  # (T, 2H): forward, then backward
        kinds = {"last": torch.cat([out[-1, :3], out[0, 3:]]), "max": out.amax(0), "mean": out.mean(0)}
        return torch.cat([kinds[k] for k in net.pool.kinds])

    full = torch.randint(1, 20, (3, 7))
    ragged = torch.tensor([[5, 6, 7, 8, 9, 10, 11], [3, 4, 0, 0, 0, 0, 0], [12, 13, 14, 15, 0, 0, 0]])
    with torch.no_grad():
        for tokens in (full, ragged):
            got = net._features(tokens, (tokens != 0).sum(1))  # (B, F)
            want = torch.stack([reference(row[row != 0]) for row in tokens])
            torch.testing.assert_close(got, want)


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


def test_lightning_module_rebuilds_from_checkpoint_hparams(tmp_path):
    net_cfg = {"_target_": "lightning_sentiment.models.MultiHotMLP", "vocab_size": 20, "hidden_dims": [4]}
    opt_cfg = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg, loss="mse")
    tokens, labels = torch.randint(1, 20, (4, 5)), torch.tensor([0.0, 1.0, 1.0, 0.0])
    loss, probs, _ = module.model_step((tokens, labels))
    torch.testing.assert_close(loss, torch.mean((probs - labels) ** 2))
    assert isinstance(module.configure_optimizers()["optimizer"], torch.optim.Adam)
    with pytest.raises(ValueError, match="model.loss"):
        SentimentClassifier(net=net_cfg, optimizer=opt_cfg, loss="hinge")


@pytest.mark.parametrize("loss_name", ["bce", "mse"])
def test_label_smoothing_moves_training_targets_only(loss_name):
    """With label_smoothing eps, training fits 1 - eps/2 and eps/2; evaluation's loss is
    the plain one, so validation losses of runs with and without it compare."""
    net_cfg = {"_target_": "lightning_sentiment.models.MultiHotMLP", "vocab_size": 20, "hidden_dims": [4]}
    opt_cfg = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
    torch.manual_seed(0)
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg, loss=loss_name, label_smoothing=0.2)
    tokens, labels = torch.randint(1, 20, (4, 5)), torch.tensor([0.0, 1.0, 1.0, 0.0])
    smoothed = torch.tensor([0.1, 0.9, 0.9, 0.1])

    def expected(probs, targets):
        if loss_name == "mse":
            return torch.mean((probs - targets) ** 2)
        return F.binary_cross_entropy(probs, targets)

    loss, probs, returned = module.train().model_step((tokens, labels))
    torch.testing.assert_close(loss, expected(probs, smoothed))
    assert torch.equal(returned, labels)  # accuracy is counted against the true labels
    loss, probs, _ = module.eval().model_step((tokens, labels))
    torch.testing.assert_close(loss, expected(probs, labels))
    assert module.hparams.label_smoothing == 0.2  # saved: a resumed run smooths the same
    for bad in (-0.1, 1.0):
        with pytest.raises(SettingError, match=f"model.label_smoothing={bad} must be in"):
            SentimentClassifier(net=net_cfg, optimizer=opt_cfg, label_smoothing=bad)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_keras_parameter_counts():
    # Published Keras counts: 693,301 (LSTM 100, vocab 20k, max_len 80), 173,205 (BiLSTM 32),
    # 160,305 (Chollet's multi-hot MLP)
    assert n_params(LSTMClassifier(20000, 32, 100, keras_bias=True, init="keras")) == 693_301
    bilstm = LSTMClassifier(10000, 16, 32, bidirectional=True, dense_dim=10, keras_bias=True)
    assert n_params(bilstm) == 173_205
    assert n_params(MultiHotMLP(10000, hidden_units=16, hidden_layers=2)) == 160_305
    assert n_params(MultiHotMLP(10000, hidden_dims=[64, 32])) == 10000 * 64 + 64 + 64 * 32 + 32 + 33


def test_keras_init():
    torch.manual_seed(0)
    net = LSTMClassifier(100, 8, 4, keras_bias=True, init="keras", embed_init_range=0.01)
    w_ih = net.forward_layers[0].weight_ih_l0
    assert w_ih[:, -1].tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 8  # forget-gate bias 1
    assert net.embedding.weight.abs().max() <= 0.01 and net.embedding.weight[0].abs().sum() == 0
    w_hh = net.forward_layers[0].weight_hh_l0[:4]
    torch.testing.assert_close(w_hh @ w_hh.T, torch.eye(4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_gradient_clipping_works_with_a_fused_optimizer_in_mixed_precision(precision):
    """Lightning refuses to clip for fused optimizers in mixed precision; our module clips
    them as it clips the unfused ones (fp16 gradients unscaled first)."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    def fit(fused: bool, clip: float | None) -> torch.Tensor:
        torch.manual_seed(0)
        net = {"_target_": "lightning_sentiment.models.MultiHotMLP", "vocab_size": 20, "hidden_dims": [8]}
        opt = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1.0, "fused": fused}
        module = SentimentClassifier(net, opt)
        tokens = torch.randint(1, 20, (64, 12))
        data = torch.utils.data.TensorDataset(tokens, (tokens[:, 0] > 10).float())
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0) if precision == "16-mixed" else None
        trainer = quiet_trainer(
            plugins=[MixedPrecision(precision, "cpu", scaler=scaler)],
            max_epochs=1,
            gradient_clip_val=clip,
            enable_checkpointing=False,
        )
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
        return torch.cat([p.detach().flatten() for p in module.parameters()])

    clipped = fit(fused=True, clip=1e-3)
    torch.testing.assert_close(clipped, fit(fused=False, clip=1e-3))
    assert not torch.allclose(clipped, fit(fused=True, clip=None))


def test_epoch_training_metrics_are_means_over_every_review_of_the_epoch():
    torch.manual_seed(0)
    net = {"_target_": "lightning_sentiment.models.MultiHotMLP", "vocab_size": 20, "hidden_dims": [4]}
    # weights fixed: outputs repeatable
    frozen = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0}
    module = SentimentClassifier(net=net, optimizer=frozen)
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.randint(1, 20, (n, 7), generator=gen), torch.randint(0, 2, (n,), generator=gen).float())
        for n in (5, 8, 3)  # unequal batches: a mean of batch means would differ
    ]
    trainer = quiet_trainer(max_epochs=1, enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    with torch.no_grad():
        steps = [module.model_step(b) for b in batches]
    loss = sum(float(step_loss) * len(labels) for step_loss, _, labels in steps) / 16
    correct = sum(int(((probs >= 0.5) == (labels >= 0.5)).sum()) for _, probs, labels in steps)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(loss, rel=1e-6)
    assert float(trainer.callback_metrics["train/acc"]) == pytest.approx(correct / 16)
    assert module.history[0]["train/acc"] == pytest.approx(correct / 16)


def test_next_word_loss_is_the_language_model_loss_of_the_forward_states():
    """next_word=1: every step with a next token in its row predicts it from the last
    layer's forward states; aux_loss is that mean loss times the weight. Evaluation
    neither computes it nor changes its logits."""
    torch.manual_seed(0)
    net = LSTMClassifier(12, 5, 6, pooling="max", next_word=1.0, next_word_weight=0.5)
    tokens = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 2, 9, 11]])  # pre-padded: 3 and 5 real tokens
    logits = net.train()(tokens)
    aligned, lengths = left_align(tokens)
    states = net.forward_layers[0](net.embedding(aligned))[0]  # no dropout set: the same states
    log_probs = net.next_word_head.log_prob(states[:, :-1].reshape(-1, 6)).view(2, 4, 12)
    targets = aligned[:, 1:]  # (2, 4)
    real = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)  # steps with a next token
    expected = -log_probs.gather(2, targets[:, :, None])[:, :, 0][real].mean() * 0.5
    torch.testing.assert_close(net.aux_loss, expected)
    net.aux_loss.backward()
    assert net.embedding.weight.grad.abs().sum() > 0  # it trains the LSTM's inputs too
    torch.manual_seed(0)
    plain = LSTMClassifier(12, 5, 6, pooling="max")  # the same weights but the next-word head
    torch.testing.assert_close(net.eval()(tokens), plain.eval()(tokens))
    assert net.aux_loss is None and logits.shape == (2,)


def _segmented_lstm_cfg(**options) -> dict:
    """A tiny segmented LSTM's config for SentimentClassifier, with `options` added."""
    return {
        "_target_": "lightning_sentiment.models.LSTMClassifier",
        "vocab_size": 12,
        "embed_dim": 4,
        "hidden_dim": 4,
        "pooling": "max_mean",
        "chunk": 3,
        **options,
    }


def test_next_word_loss_is_added_to_training_only_and_checked():
    net_cfg = _segmented_lstm_cfg(next_word=0.5)
    opt_cfg = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg)
    batch = (torch.randint(1, 12, (4, 9)), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    torch.manual_seed(1)
    total = module.train().training_step(batch, 0)
    aux = module.net.aux_loss
    torch.manual_seed(1)
    loss, _, _ = module.model_step(batch)  # the same draws: the sentiment loss alone
    torch.testing.assert_close(total, loss + aux)
    assert aux > 0
    # a frozen epoch with every step drawn and no dropout: train/aux_loss is the mean over its reviews
    frozen = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0}
    module = SentimentClassifier(net=net_cfg | {"next_word": 1.0}, optimizer=frozen)
    gen = torch.Generator().manual_seed(2)
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    batches = [(torch.randint(1, 12, (n, 9), generator=gen), labels[:n]) for n in (5, 3)]
    trainer = quiet_trainer(max_epochs=1, enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    module.train()
    per_batch = []
    for b in batches:
        module.model_step(b)
        per_batch.append(float(module.net.aux_loss) * len(b[1]))
    assert float(trainer.callback_metrics["train/aux_loss"]) == pytest.approx(sum(per_batch) / 8, rel=1e-5)
    assert module.history[0]["train/aux_loss"] == pytest.approx(sum(per_batch) / 8, rel=1e-5)
    for bad in (-0.1, 1.5):
        with pytest.raises(SettingError, match=f"model.net.next_word={bad} must lie in"):
            LSTMClassifier(12, 4, 4, next_word=bad)


def test_segment_logits_are_each_segment_read_as_a_review_of_its_own():
    """segment_loss: in training, every segment's logit is what the network gives that
    segment alone; evaluation neither computes them nor changes its logits."""
    torch.manual_seed(0)
    net = LSTMClassifier(50, 8, 8, pooling="max_mean", chunk=4, segment_loss=0.5).train()
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [0, 0, 0, 0, 0, 3, 4, 5, 6, 7]])
    net(tokens)
    logits, reviews = net.segment_logits
    assert reviews.tolist() == [0, 0, 0, 1, 1]  # 4 + 4 + 2 tokens, then 4 + 1
    segments = [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14], [3, 4, 5, 6], [7]]
    alone = torch.stack([net(torch.tensor([s]))[0] for s in segments])
    torch.testing.assert_close(logits, alone)
    torch.manual_seed(0)
    plain = LSTMClassifier(50, 8, 8, pooling="max_mean", chunk=4)
    torch.testing.assert_close(net.eval()(tokens), plain.eval()(tokens))
    assert net.segment_logits is None
    with pytest.raises(SettingError, match="segment_loss=0.5 needs segments: set model.net.chunk"):
        LSTMClassifier(50, 8, 8, pooling="max", segment_loss=0.5)
    with pytest.raises(SettingError, match="segment_loss=-1.0 must be >= 0"):
        LSTMClassifier(50, 8, 8, pooling="max", chunk=4, segment_loss=-1.0)


def test_segment_loss_is_added_to_the_training_loss_with_its_weight():
    net_cfg = _segmented_lstm_cfg(segment_loss=0.25)
    opt_cfg = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg).train()
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    batch = (torch.randint(1, 12, (4, 9)), labels)
    torch.manual_seed(1)
    total = module.training_step(batch, 0)
    torch.manual_seed(1)
    loss, _, _ = module.model_step(batch)  # the same draws: the review loss alone
    logits, reviews = module.net.segment_logits
    assert reviews.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    expected = 0.25 * F.binary_cross_entropy_with_logits(logits, labels[reviews])
    torch.testing.assert_close(total, loss + expected)
    # with model.loss=mse and label smoothing, segments are scored as the reviews are
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg, loss="mse", label_smoothing=0.2).train()
    torch.manual_seed(1)
    total = module.training_step(batch, 0)
    torch.manual_seed(1)
    loss, _, _ = module.model_step(batch)
    logits, reviews = module.net.segment_logits
    targets = labels[reviews] * 0.8 + 0.1
    torch.testing.assert_close(total, loss + 0.25 * F.mse_loss(torch.sigmoid(logits), targets))


def test_review_lstm_reads_each_reviews_segments_in_order():
    """review_lstm: the head sees pooled features beside the review LSTM's state after
    the review's last segment, computed from its own segments only (padding, empty
    slots and other reviews aside); swapping two segments changes it, as pooling alone
    would not notice."""
    torch.manual_seed(0)
    net = LSTMClassifier(50, 8, 8, pooling="max_mean", chunk=4, review_lstm=5).eval()
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [0, 0, 0, 0, 0, 3, 4, 5, 6, 7]])
    features = net._features(*left_align(tokens))  # (2, 16 + 5)
    assert features.shape == (2, net.pool.size + 5)
    for row, segments in enumerate([[[5, 6, 7, 8], [9, 10, 11, 12], [13, 14]], [[3, 4, 5, 6], [7]]]):
        pooled = [net._features(*left_align(torch.tensor([s])))[:, : net.pool.size] for s in segments]
        alone = torch.cat(pooled)  # (k, F): each segment pooled as a review of its own
        state = net.review_lstm(alone[None])[0][0, -1]  # after the last segment
        torch.testing.assert_close(features[row, net.pool.size :], state)
    swapped = net._features(*left_align(torch.tensor([[9, 10, 11, 12, 5, 6, 7, 8, 13, 14]])))
    torch.testing.assert_close(swapped[0, : net.pool.size], features[0, : net.pool.size])  # pooling: same
    assert not torch.allclose(swapped[0, net.pool.size :], features[0, net.pool.size :])
    assert net(tokens).shape == (2,)
    with pytest.raises(SettingError, match="review_lstm=5 needs segments: set model.net.chunk"):
        LSTMClassifier(50, 8, 8, pooling="max", review_lstm=5)
    with pytest.raises(SettingError, match="review_lstm=-1 must be >= 0"):
        LSTMClassifier(50, 8, 8, pooling="max", chunk=4, review_lstm=-1)
    with pytest.raises(SettingError, match="review_lstm reads whole reviews, segment_loss single segments"):
        LSTMClassifier(50, 8, 8, pooling="max", chunk=4, review_lstm=5, segment_loss=0.5)
