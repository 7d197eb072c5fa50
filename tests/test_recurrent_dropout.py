"""Dropout inside the LSTM: Keras' recurrent dropout (step by step) and weight drop."""

import pytest
import torch
from torch import nn

from lightning_sentiment.models import LSTMClassifier, recurrent
from lightning_sentiment.models.recurrent import lstm_steps, recurrent_dropout_mask
from lightning_sentiment.pipeline import train


def cell_reference(layer: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """torch's own LSTMCell with the layer's weights, fed the masked previous state."""
    cell = nn.LSTMCell(layer.input_size, layer.hidden_size, bias=layer.bias)
    with torch.no_grad():
        cell.weight_ih.copy_(layer.weight_ih_l0)
        cell.weight_hh.copy_(layer.weight_hh_l0)
        if layer.bias:
            cell.bias_ih.copy_(layer.bias_ih_l0)
            cell.bias_hh.copy_(layer.bias_hh_l0)
    h = c = x.new_zeros(x.shape[0], layer.hidden_size)
    outputs = []
    for step in range(x.shape[1]):
        h, c = cell(x[:, step], (h * mask, c))  # the mask reaches the recurrent matrix only
        outputs.append(h)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_steps_is_the_fused_lstm_without_a_mask_and_lstmcell_with_one(bias):
    torch.manual_seed(0)
    layer = nn.LSTM(5, 4, batch_first=True, bias=bias)
    x = torch.randn(3, 7, 5, requires_grad=True)
    ones = torch.ones(3, 4)
    stepped = lstm_steps(layer, x, ones)
    fused = layer(x)[0]
    torch.testing.assert_close(stepped, fused, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(fused)
    torch.testing.assert_close(
        torch.autograd.grad(stepped, [x, layer.weight_hh_l0], grad),
        torch.autograd.grad(fused, [x, layer.weight_hh_l0], grad),
        rtol=1e-5,
        atol=1e-6,
    )
    mask = torch.tensor([[2.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    masked = lstm_steps(layer, x, mask)
    torch.testing.assert_close(masked, cell_reference(layer, x, mask), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(masked[:2], fused[:2])  # rows with dropped units differ
    torch.testing.assert_close(masked[:, 0], fused[:, 0])  # the first step has no previous state


def test_the_mask_is_one_per_sequence_scaled_like_keras():
    torch.manual_seed(0)
    mask = recurrent_dropout_mask(torch.zeros(400, 9, 3), 50, 0.25)
    assert mask.shape == (400, 50)
    torch.testing.assert_close(mask.unique(), torch.tensor([0.0, 4 / 3]))
    assert 0.23 < (mask == 0).float().mean() < 0.27


@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_dropout_acts_in_training_only(bidirectional, monkeypatch):
    torch.manual_seed(0)
    masks = []

    def recording(x, hidden, p):
        masks.append(recurrent_dropout_mask(x, hidden, p))
        return masks[-1]

    monkeypatch.setattr(recurrent, "recurrent_dropout_mask", recording)
    kwargs = dict(
        pooling="max", dropout=0.0, num_layers=2, bidirectional=bidirectional, chunk=4, keras_bias=True
    )
    net = LSTMClassifier(20, 6, 5, recurrent_dropout=0.5, **kwargs)
    plain = LSTMClassifier(20, 6, 5, **kwargs)
    plain.load_state_dict(net.state_dict())  # the option adds no weights
    tokens = torch.randint(1, 20, (6, 11))
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(tokens), plain.eval()(tokens))
        torch.testing.assert_close(plain.train()(tokens), plain.eval()(tokens))  # no other dropout
        dropped = net.train()(tokens)
    assert len(masks) == (4 if bidirectional else 2)  # one per layer and direction
    assert not torch.allclose(dropped, plain.eval()(tokens))
    net(tokens).sum().backward()
    assert all(layer.weight_hh_l0.grad.abs().sum() > 0 for layer in net.forward_layers)


@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.3])
def test_weight_dropout_drops_recurrent_weights_once_a_batch(monkeypatch, recurrent_dropout):
    """Training uses a dropped copy of each recurrent matrix, the same at every step;
    the gradient reaches the kept entries only; evaluation reads the whole matrix."""
    torch.manual_seed(0)
    drawn, draw = [], recurrent.dropped_weight

    def recording(weight, p):
        drawn.append(draw(weight, p))
        return drawn[-1]

    monkeypatch.setattr(recurrent, "dropped_weight", recording)
    net = LSTMClassifier(
        20, 6, 5, pooling="max", dropout=0.0, weight_dropout=0.5, recurrent_dropout=recurrent_dropout
    )
    tokens = torch.randint(1, 20, (6, 11))
    with torch.no_grad():
        whole = net.eval()(tokens)
    torch.manual_seed(1)
    trained = net.train()(tokens)
    (weight,) = drawn  # one layer, one draw
    original = net.forward_layers[0].weight_hh_l0
    kept = weight != 0
    assert 0.4 < 1 - kept.float().mean() < 0.6
    torch.testing.assert_close(weight[kept], 2 * original[kept])
    copy = LSTMClassifier(20, 6, 5, pooling="max", dropout=0.0, recurrent_dropout=recurrent_dropout)
    copy.load_state_dict(net.state_dict())
    with torch.no_grad():
        copy.forward_layers[0].weight_hh_l0.copy_(weight)
    torch.manual_seed(1)
    draw(weight, 0.5)  # the random numbers the weight's draw took: the same recurrent mask next
    torch.testing.assert_close(trained, copy.train()(tokens))
    assert not torch.allclose(trained, whole)
    trained.sum().backward()
    assert (original.grad[~kept] == 0).all() and original.grad[kept].abs().sum() > 0


def test_dropout_arguments_are_checked():
    for name in ("recurrent_dropout", "weight_dropout"):
        with pytest.raises(ValueError, match=f"{name}=1.0"):
            LSTMClassifier(10, 4, 4, **{name: 1.0})


def test_the_tutorial_lstm_trains_with_recurrent_dropout(train_cfg):
    cfg = train_cfg(["experiment=keras_lstm_80", "model.net.recurrent_dropout=0.2", "debug=fdr"])
    assert cfg.model.net.recurrent_dropout == 0.2
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1
