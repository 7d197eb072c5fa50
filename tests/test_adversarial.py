import pytest
import torch
import torch.nn.functional as F

from lightning_sentiment.errors import SettingError
from lightning_sentiment.models import LSTMClassifier, SentimentClassifier
from lightning_sentiment.models.adversarial import adversarial_step, direction
from lightning_sentiment.pipeline import train


def lstm_module(eps: float, **net) -> SentimentClassifier:
    torch.manual_seed(0)
    net = {"_target_": "lightning_sentiment.models.LSTMClassifier", "vocab_size": 30, "embed_dim": 8}
    net |= {"hidden_dim": 6, "pooling": "max", "chunk": 4, "random_offsets": True, "word_dropout": 0.2}
    net |= {"dropout": 0.3}
    optimizer = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
    return SentimentClassifier(net=net, optimizer=optimizer, adversarial_eps=eps).train()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    tokens = torch.randint(2, 30, (5, 11))
    tokens[1, 7:] = 0
    tokens[3, 3:] = 0
    return tokens, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])


def run_adversarial_step(module: SentimentClassifier, data, eps: float):
    return adversarial_step(lambda: module.model_step(data), module.net.embedding, eps, module.parameters())


def test_direction_has_norm_eps_a_token_along_the_gradient():
    grad = torch.randn(3, 4, 5)
    grad[1] *= 100
    tokens = torch.tensor([[3, 4, 5, 6], [7, 0, 0, 0], [2, 2, 9, 0]])
    shift = direction(grad, 2.5, tokens)
    torch.testing.assert_close(shift.flatten(1).norm(dim=1), 2.5 * torch.tensor([4.0, 1.0, 3.0]).sqrt())
    cosine = F.cosine_similarity(shift.flatten(1), grad.flatten(1))
    torch.testing.assert_close(cosine, torch.ones(3))


def test_second_run_replays_segments_and_dropout():
    """eps 0: the second run sees the same random segment offsets and dropout masks,
    so it scores exactly the first run's loss."""
    module, data = lstm_module(0.0), batch()
    total, loss, _, _ = run_adversarial_step(module, data, 0.0)
    assert torch.equal(total, 2 * loss)
    again, _, _ = module.model_step(data)  # without the replay: other draws, another loss
    assert not torch.equal(again, loss)


def test_perturbation_raises_the_loss_more_than_a_random_one():
    module, data = lstm_module(0.0), batch()
    rng = torch.get_rng_state()
    _, loss, _, _ = run_adversarial_step(module, data, 0.0)
    torch.set_rng_state(rng)
    total, same, _, _ = run_adversarial_step(module, data, 0.5)
    assert torch.equal(same, loss)
    adversarial = total - loss
    randoms = []
    for seed in range(10):
        gen = torch.Generator().manual_seed(seed)
        handle = module.net.embedding.register_forward_hook(
            lambda m, i, out, gen=gen: out + direction(torch.randn(out.shape, generator=gen), 0.5, i[0])
        )
        torch.set_rng_state(rng)
        randoms.append(float(module.model_step(data)[0].detach()))
        handle.remove()
    assert adversarial > loss and adversarial > max(randoms)


def test_gradient_is_that_of_both_terms_with_the_direction_held_constant():
    """One backward of the clean loss, its graph freed, then the perturbed loss: the same
    gradient as one backward through both graphs (the straightforward form, kept here)."""
    module, data = lstm_module(0.0), batch()
    embedding = module.net.embedding
    rng = torch.get_rng_state()
    total, _, _, _ = run_adversarial_step(module, data, 0.5)
    total.backward()
    grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()

    torch.set_rng_state(rng)
    seen = []
    handle = embedding.register_forward_hook(lambda m, i, out: seen.append((i[0], out)))
    loss, _, _ = module.model_step(data)
    handle.remove()
    (grad,) = torch.autograd.grad(loss, seen[0][1], retain_graph=True)
    shift = direction(grad, 0.5, seen[0][0])
    torch.set_rng_state(rng)
    handle = embedding.register_forward_hook(lambda m, i, out: out + shift)
    adversarial, _, _ = module.model_step(data)
    handle.remove()
    torch.testing.assert_close(total, loss + adversarial)
    (loss + adversarial).backward()
    for got, want in zip(grads, [p.grad for p in module.parameters()], strict=True):
        torch.testing.assert_close(got, want)
    assert min(float(g.abs().sum()) for g in grads) > 0  # every weight got a gradient to compare


def test_training_step_trains_on_both_terms_and_reports_the_plain_loss():
    plain, adversarial = lstm_module(0.0), lstm_module(0.5)
    adversarial.load_state_dict(plain.state_dict())
    data = batch()
    rng = torch.get_rng_state()
    plain_total = plain.training_step(data, 1)
    torch.set_rng_state(rng)
    total = adversarial.training_step(data, 1)
    assert total > 2 * plain_total * 0.999  # both terms; the second above the first
    loss_sum = adversarial._train_sums.loss
    torch.testing.assert_close(loss_sum, plain._train_sums.loss)  # the reported loss: the plain one


def test_adversarial_eps_is_checked():
    optimizer = {"_target_": "torch.optim.Adam", "_partial_": True}
    mlp = {"_target_": "lightning_sentiment.models.MultiHotMLP", "vocab_size": 30, "hidden_dims": [4]}
    with pytest.raises(SettingError, match="needs a network with a word embedding"):
        SentimentClassifier(net=mlp, optimizer=optimizer, adversarial_eps=1.0)
    with pytest.raises(SettingError, match="must be >= 0"):
        SentimentClassifier(net=mlp, optimizer=optimizer, adversarial_eps=-1.0)
    assert isinstance(lstm_module(1.0).net, LSTMClassifier)


def test_train_with_adversarial_eps_end_to_end(train_cfg):
    cfg = train_cfg(["model.adversarial_eps=1.0", "trainer.max_epochs=2", "model.net.embed_dim=8"])
    metrics = train(cfg)
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test/acc"] <= 1.0
    assert metrics["train/loss"] > 0
