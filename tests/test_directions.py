"""`parallel_directions`: a bidirectional LSTM's directions on two threads, same results."""

import threading

import pytest
import torch

from lightning_sentiment.models import LSTMClassifier, directions
from lightning_sentiment.models import reading as reading_module

TOKENS = torch.tensor([[5, 3, 9, 2, 0, 0, 0], [7, 0, 0, 0, 0, 0, 0], [4, 4, 8, 1, 6, 2, 3]])


def pair(**kwargs) -> tuple[LSTMClassifier, LSTMClassifier]:
    torch.manual_seed(0)
    plain = LSTMClassifier(10, 8, 6, num_layers=2, bidirectional=True, pooling="max", **kwargs)
    parallel = LSTMClassifier(10, 8, 6, num_layers=2, bidirectional=True, pooling="max", **kwargs)
    parallel.load_state_dict(plain.state_dict())
    parallel.parallel_directions = True
    return plain, parallel


def logits_and_grads(net: LSTMClassifier, seed: int = 1):
    net.zero_grad()
    torch.manual_seed(seed)  # the same dropout masks and segment offsets for both nets
    logits = net(TOKENS)
    (logits * torch.tensor([1.0, -2.0, 0.5])).sum().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.parametrize("keras_bias", [False, True])
def test_parallel_directions_train_like_one_after_the_other(keras_bias, monkeypatch):
    plain, parallel = pair(keras_bias=keras_bias, chunk=3, dropout=0.3, random_offsets=True)
    threads = set()
    original = directions._graph

    def spy(*args):
        threads.add(threading.get_ident())
        return original(*args)

    monkeypatch.setattr(directions, "_graph", spy)
    logits, grads = logits_and_grads(parallel.train())
    expected, expected_grads = logits_and_grads(plain.train())
    torch.testing.assert_close(logits, expected)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, expected_grads[name], msg=name)
    assert len(threads) == 2  # the backward directions ran on the worker thread


def test_parallel_directions_in_evaluation_and_under_bf16_autocast():
    plain, parallel = pair(chunk=3, shifted_eval=True)
    with torch.inference_mode():
        torch.testing.assert_close(parallel.eval()(TOKENS), plain.eval()(TOKENS))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the worker thread runs in bf16 too
        logits, grads = logits_and_grads(parallel.train())
        expected, expected_grads = logits_and_grads(plain.train())
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits, expected)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], msg=name)


def test_dropouts_inside_the_lstm_fall_back_to_one_direction_at_a_time(monkeypatch):
    plain, parallel = pair(weight_dropout=0.5)
    calls = []

    def stub(fwd, bwd, x, x_reversed):
        calls.append(fwd)
        return fwd(x)[0], bwd(x_reversed)[0]

    monkeypatch.setattr(reading_module, "both_directions", stub)
    torch.testing.assert_close(logits_and_grads(parallel.train())[0], logits_and_grads(plain.train())[0])
    assert calls == []
    parallel.eval()(TOKENS)  # no dropout in evaluation: the parallel path (here the stub)
    assert len(calls) == 2
