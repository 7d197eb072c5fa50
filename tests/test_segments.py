"""LSTMClassifier reading reviews as segments: pooling over them, shifted and random boundaries."""

import pytest
import torch

from lightning_sentiment.models import LSTMClassifier
from lightning_sentiment.models.pooling import Pooling
from lightning_sentiment.models.sequences import split_segments
from tests.helpers import REVIEWS, padded


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
