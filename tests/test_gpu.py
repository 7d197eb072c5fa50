"""GPU behaviour: skipped cleanly without CUDA (CI); run on a lent GPU machine."""

import json
import math
from pathlib import Path

import pytest
import torch

from lightning_sentiment.models import LSTMClassifier
from lightning_sentiment.pipeline import train
from lightning_sentiment.predict import SentimentPredictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _batch(padding: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 50, (6, 30), generator=gen)  # (B, T)
    for row, length in enumerate([30, 1, 7, 19, 0, 12]):  # a full row and an empty one
        if padding == "pre":
            tokens[row, : 30 - length] = 0
        else:
            tokens[row, length:] = 0
    return tokens


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "max", "mean", "max_mean", "max_mean_attn"])
@pytest.mark.parametrize("padding", ["pre", "post"])
def test_cuda_lstm_equals_cpu(bidirectional, pooling, padding):
    """cuDNN gives the CPU path's logits and gradients (cuDNN backward needs train mode)."""
    torch.manual_seed(0)
    net = LSTMClassifier(50, 16, 12, num_layers=2, bidirectional=bidirectional, pooling=pooling)
    tokens = _batch(padding)
    cpu = net(tokens)
    cpu.sum().backward()
    cpu_grad = net.forward_layers[0].weight_hh_l0.grad.clone()
    net.zero_grad()
    gpu_net = net.cuda()
    gpu = gpu_net(tokens.cuda())
    gpu.sum().backward()
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        gpu_net.forward_layers[0].weight_hh_l0.grad.cpu(), cpu_grad, atol=1e-4, rtol=1e-3
    )


@pytest.mark.parametrize("dropout", ["recurrent_dropout", "weight_dropout"])
def test_cuda_lstm_dropouts_train(dropout):
    """Both LSTM dropouts train on cuDNN; evaluation stays the plain fused LSTM's."""
    torch.manual_seed(0)
    net = LSTMClassifier(50, 16, 12, pooling="max", dropout=0.0, **{dropout: 0.5}).cuda()
    plain = LSTMClassifier(50, 16, 12, pooling="max", dropout=0.0).cuda()
    plain.load_state_dict(net.state_dict())
    tokens = _batch("pre").cuda()
    trained = net.train()(tokens)
    trained.sum().backward()
    assert torch.isfinite(trained).all() and net.forward_layers[0].weight_hh_l0.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(tokens), plain.eval()(tokens))
        assert not torch.allclose(trained, plain.eval()(tokens))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bilstm", "mlp"])
def test_train_on_gpu_mixed_precision(train_cfg, model):
    """trainer=gpu (16-mixed) trains, tests and writes a checkpoint the CPU predictor reads."""
    cfg = train_cfg([f"model={model}", "trainer=gpu", "trainer.max_epochs=2"])
    metrics = train(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["epochs"] == 2 and 0.0 <= saved["test/acc"] <= 1.0 and saved["test/loss"] > 0
    texts = ["a great wonderful film", "awful boring plot"]
    cpu = SentimentPredictor(metrics["best_model_path"])
    gpu = SentimentPredictor(metrics["best_model_path"], device="cuda")
    encoded = [cpu.encode(t)[0] for t in texts]
    assert cpu.predict_proba(encoded) == pytest.approx(gpu.predict_proba(encoded), abs=1e-4)


def test_datamodule_moves_batches_to_the_gpu(tmp_path):
    from lightning_sentiment.data import SentimentDataModule

    dm = SentimentDataModule(data_dir=str(tmp_path))
    tokens, labels = _batch("pre"), torch.ones(6)
    moved = dm.transfer_batch_to_device((tokens, labels), torch.device("cuda", 0), 0)
    assert type(moved) is tuple and all(t.is_cuda for t in moved)
    torch.cuda.synchronize()  # non-blocking copies: the values must still arrive whole
    assert torch.equal(moved[0].cpu(), tokens) and torch.equal(moved[1].cpu(), labels)


def test_lm_pretrain_runs_on_the_gpu_it_is_given():
    """The language model trains on the run's device and leaves the weights there."""
    from lightning_sentiment.models import pretrain
    from tests.test_pretrain import cycle_reviews

    torch.manual_seed(3)
    net = LSTMClassifier(60, 16, 16, pooling="max_mean", chunk=10, lm_pretrain=2)
    before = net.embedding.weight.detach().clone()
    losses = pretrain.lm_pretrain(net, cycle_reviews(300), 2, device=torch.device("cuda", 0))
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert net.embedding.weight.is_cuda and not torch.equal(net.embedding.weight.cpu(), before)
