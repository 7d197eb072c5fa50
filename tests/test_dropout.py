"""`models.dropout`: the CPU mask drawn through `torch.rand(float64)` is torch's own
dropout bit for bit: outputs, gradients and the generator's state afterwards."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_sentiment.models import LSTMClassifier
from lightning_sentiment.models.dropout import Dropout, dropout


def seeded(fn, seed=7):
    torch.manual_seed(seed)
    out = fn()
    return out, torch.rand(4)  # the next draws tell the generator's state


@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_values_gradients_and_next_draws_as_torch(p, dtype):
    x = torch.randn(37, 50, 16).to(dtype).requires_grad_()
    grad = torch.randn(37, 50, 16).to(dtype)
    (ours, after_ours), (theirs, after_theirs) = (
        seeded(lambda: dropout(x, p, True)),
        seeded(lambda: F.dropout(x, p, True)),
    )
    assert torch.equal(ours, theirs) and torch.equal(after_ours, after_theirs)
    assert 0 < (ours == 0).float().mean() < 1  # something was dropped, not everything
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    (theirs_grad,) = torch.autograd.grad(theirs, x, grad)
    assert torch.equal(ours_grad, theirs_grad)


def test_a_different_draw_would_be_caught():
    """The comparison above can fail: float32 uniforms keep other elements."""
    x = torch.randn(20, 30)
    torch.manual_seed(7)
    float32_mask = x * (torch.rand(x.shape) < 0.5).to(x.dtype).div_(0.5)
    assert not torch.equal(float32_mask, seeded(lambda: F.dropout(x, 0.5, True))[0])


def test_non_contiguous_inputs_evaluation_and_edge_rates_are_torchs():
    x = torch.randn(10, 20, 8).transpose(0, 1)  # bernoulli_ fills these in memory order
    assert not x.is_contiguous()
    assert torch.equal(seeded(lambda: dropout(x, 0.5, True))[0], seeded(lambda: F.dropout(x, 0.5, True))[0])
    assert torch.equal(dropout(x, 0.5, False), x)
    assert torch.equal(dropout(x, 0.0, True), x)
    assert torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))


def test_module_keeps_nn_dropouts_face():
    module = Dropout(0.3)
    assert isinstance(module, nn.Dropout) and module.p == 0.3 and repr(module) == repr(nn.Dropout(0.3))
    assert module.state_dict() == {}
    x = torch.randn(5, 6)
    assert torch.equal(module.eval()(x), x)


def test_lstm_training_step_equals_torchs_dropout():
    """A whole training forward and backward of the default kind of LSTM (segments, word
    dropout, random offsets, length groups, two layers) with this dropout and with
    `nn.Dropout`: the same logits and gradients."""

    def run(torch_dropout: bool):
        torch.manual_seed(0)
        net = LSTMClassifier(
            50,
            8,
            8,
            num_layers=2,
            dropout=0.5,
            pooling="max_mean",
            chunk=5,
            word_dropout=0.2,
            random_offsets=True,
            length_groups=True,
        ).train()
        if torch_dropout:
            net.dropout, net.output_dropout = nn.Dropout(0.5), nn.Dropout(0.5)
        tokens = torch.randint(1, 50, (6, 23))
        tokens[2, 11:] = 0
        tokens[4, 3:] = 0
        torch.manual_seed(1)
        logits = net(tokens)
        logits.sum().backward()
        return logits, [p.grad for p in net.parameters()]

    (ours, ours_grads), (theirs, theirs_grads) = run(False), run(True)
    assert torch.equal(ours, theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, theirs_grads, strict=True))
