"""SentimentClassifier, the LightningModule: rebuilding, losses, clipping, epoch metrics."""

import pytest
import torch
import torch.nn.functional as F

from lightning_sentiment.errors import SettingError
from lightning_sentiment.models import SentimentClassifier
from tests.helpers import quiet_trainer


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
