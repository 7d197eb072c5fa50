"""`SentimentClassifier`: the LightningModule that trains any of the networks."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import BinaryAccuracy

from lightning_sentiment.errors import SentimentError

LOSSES = ("bce", "mse")
SPLITS = ("train", "val", "test")


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class SentimentClassifier(pl.LightningModule):
    """Binary sentiment training for a network mapping token ids (B, T) to logits (B,).

    `net`, `optimizer` and `scheduler` are Hydra configs (dicts with `_target_`), kept
    as hyperparameters so `load_from_checkpoint(path)` rebuilds the network from the
    checkpoint alone. The optimizer and scheduler are partials completed here.
    """

    def __init__(
        self,
        net: dict,
        optimizer: dict,
        scheduler: dict | None = None,
        loss: str = "bce",
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss} is not allowed: use {' or '.join(LOSSES)}")
        self.save_hyperparameters(
            {"net": _plain(net), "optimizer": _plain(optimizer), "scheduler": _plain(scheduler), "loss": loss}
        )
        self.net = instantiate(self.hparams.net)
        self.loss_name = loss
        # ModuleDict keys may not be "train" (nn.Module.train), hence a "split_" prefix.
        self.acc = torch.nn.ModuleDict({f"split_{s}": BinaryAccuracy() for s in SPLITS})
        self.mean_loss = torch.nn.ModuleDict({f"split_{s}": MeanMetric() for s in SPLITS})
        self.val_acc_best = MaxMetric()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)

    def model_step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens, labels = batch[0], batch[1]
        logits = self(tokens).float()  # (B,); float so mixed precision keeps an fp32 loss
        probs = torch.sigmoid(logits)
        if self.loss_name == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, labels)
        else:  # Keras' "mse" on the sigmoid output
            loss = F.mse_loss(probs, labels)
        return loss, probs, labels

    def _step(self, batch, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        loss, probs, labels = self.model_step(batch)
        mean_loss, acc = self.mean_loss[f"split_{split}"], self.acc[f"split_{split}"]
        mean_loss(loss, weight=labels.numel())
        acc(probs, labels.long())
        self.log(f"{split}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=split == "train")
        self.log(f"{split}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss, probs

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")[0]
        if not torch.isfinite(loss):  # stop now, not after hours of NaN epochs
            raise SentimentError(
                f"the training loss became {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}: lower model.optimizer.lr or set trainer.gradient_clip_val"
            )
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def test_step(self, batch, batch_idx: int) -> None:
        _, probs = self._step(batch, "test")
        self.test_outputs.append((batch[2].cpu(), probs.detach().float().cpu()))  # for the reports

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(corpus indices, P(positive)) of the last test run, from every rank.

        Under DDP all ranks must call this (it gathers); shards may differ in size.
        """
        index, probs = (torch.cat(t) for t in zip(*self.test_outputs, strict=True))
        if self.trainer.world_size == 1:
            return index, probs
        sizes = self.all_gather(torch.tensor(len(index), device=self.device))  # (world,)
        width = int(sizes.max())
        padded = torch.full((width, 2), -1.0, dtype=torch.float64, device=self.device)
        padded[: len(index)] = torch.stack([index.double(), probs.double()], dim=1).to(self.device)
        gathered = self.all_gather(padded).reshape(-1, width, 2)  # (world, width, 2)
        rows = torch.cat([g[:n] for g, n in zip(gathered, sizes.tolist(), strict=True)]).cpu()
        return rows[:, 0].long(), rows[:, 1].float()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch[0]).float())

    def on_train_start(self) -> None:
        # The sanity check ran validation already; its numbers must not count as "best".
        self.mean_loss["split_val"].reset()
        self.acc["split_val"].reset()
        self.val_acc_best.reset()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.acc["split_val"].compute())
        best = self.val_acc_best.compute()
        self.log("val/acc_best", best, sync_dist=True, prog_bar=True)
        self.log("hp_metric", best, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Random states at the epoch boundary: a resumed run draws the same dropout masks.
        # Torch's only: data order comes from seeded numpy generators, not global state,
        # and tensors keep the checkpoint loadable with torch.load(weights_only=True).
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])

    def configure_optimizers(self) -> dict:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return {"optimizer": optimizer}
        scheduler_cfg = dict(self.hparams.scheduler)
        lightning_keys = {
            k: scheduler_cfg.pop(k) for k in ("monitor", "interval", "frequency") if k in scheduler_cfg
        }
        scheduler = instantiate(scheduler_cfg)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
