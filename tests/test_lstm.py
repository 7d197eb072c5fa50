"""LSTMClassifier: padding invariance, reading directions, word dropout, Keras parity."""

import pytest
import torch
from torch import nn

from lightning_sentiment.models import LSTMClassifier, MultiHotMLP
from lightning_sentiment.models.sequences import left_align, reverse_within
from tests.helpers import REVIEWS, padded


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


def test_reverse_within_keeps_steps_first_memory():
    """Rows handed over as a view of (T, B, D) memory (`group_rows`) come back reversed in
    the same layout, with the same values and gradient as from batch-first memory."""
    lengths = torch.tensor([4, 2, 3])
    steps_first = torch.randn(4, 3, 2, requires_grad=True)  # (T, B, D)
    x = steps_first.transpose(0, 1)  # (B, T, D), not contiguous
    rev = reverse_within(x, lengths)
    assert rev.transpose(0, 1).is_contiguous()
    dense = x.detach().contiguous().requires_grad_()
    expected = reverse_within(dense, lengths)
    assert torch.equal(rev, expected)
    assert rev[1, :, 0].tolist() == [
        x[1, 1, 0].item(),
        x[1, 0, 0].item(),
        x[1, 2, 0].item(),
        x[1, 3, 0].item(),
    ]
    weights = torch.randn(3, 4, 2)
    (rev * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.equal(steps_first.grad.transpose(0, 1), dense.grad)


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
