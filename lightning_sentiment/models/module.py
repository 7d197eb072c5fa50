"""`SentimentClassifier`: the LightningModule that trains any of the networks."""

from __future__ import annotations

import time
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.trainer.states import TrainerFn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import BinaryAccuracy

from lightning_sentiment.errors import SentimentError
from lightning_sentiment.models.adversarial import adversarial_step, embedding_of
from lightning_sentiment.models.data_fit import fit_network_to_data
from lightning_sentiment.models.gather import gather_rows
from lightning_sentiment.models.lean import LeanLightningModule
from lightning_sentiment.models.losses import check_loss_settings, network_terms, sentiment_loss
from lightning_sentiment.models.optimization import build_optimization, clip_gradients
from lightning_sentiment.models.resume import (
    apply_resume_changes,
    changed_settings,
    replay_plateau_steps,
    restore_rng_states,
    save_rng_states,
)
from lightning_sentiment.models.running import TrainSums

EVAL_SPLITS = ("val", "test")
NAN_CHECK_EVERY = 25  # steps; each check is a host sync on GPU


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class SentimentClassifier(LeanLightningModule):
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
        adversarial_eps: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        check_loss_settings(loss, adversarial_eps, label_smoothing)
        self.save_hyperparameters(
            {
                "net": _plain(net),
                "optimizer": _plain(optimizer),
                "scheduler": _plain(scheduler),
                "loss": loss,
                "adversarial_eps": adversarial_eps,
                "label_smoothing": label_smoothing,
            }
        )
        self.net = instantiate(self.hparams.net)
        self.loss_name = loss
        self.adversarial_eps = adversarial_eps
        self.label_smoothing = label_smoothing
        if adversarial_eps:
            embedding_of(self.net)  # fail now, not at the first step
        # torch checks the optimizer's and scheduler's settings (a negative learning rate, a
        # factor over 1) when they are built, after data setup: build them on a stand-in now
        build_optimization(
            self.hparams.optimizer, self.hparams.scheduler, [torch.nn.Parameter(torch.zeros(1))]
        )
        self._init_metrics()
        self._resume_changes: dict[str, dict] = {}  # optimizer/scheduler settings a resume changed
        self.resuming = False  # set by train(cfg): the checkpoint brings the weights fitted to data

    def _init_metrics(self) -> None:
        """Validation and test: torchmetrics. Training: running sums on the device, because
        two torchmetrics updates cost ~1.4 ms a step, 15% of a small LSTM's CPU step."""
        self.acc = torch.nn.ModuleDict({s: BinaryAccuracy(validate_args=False) for s in EVAL_SPLITS})
        self.mean_loss = torch.nn.ModuleDict({s: MeanMetric() for s in EVAL_SPLITS})
        self.val_acc_best = MaxMetric()
        self.history: dict[int, dict] = {}  # epoch -> metrics, for curves.png
        self._train_sums = TrainSums()
        self._epoch_start = time.perf_counter()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)

    def model_step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens, labels = batch[0], batch[1]
        logits = self(tokens).float()  # (B,); float so mixed precision keeps an fp32 loss
        return self._loss(logits, labels), torch.sigmoid(logits), labels

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The configured loss of logits (N,) against 0/1 labels (N,); label smoothing in
        training only, so evaluation losses stay comparable."""
        smoothing = self.label_smoothing if self.training else 0.0
        return sentiment_loss(logits, labels, self.loss_name, smoothing)

    def _eval_step(self, batch, split: str) -> torch.Tensor:
        loss, probs, labels = self.model_step(batch)
        # update(), not forward(): forward() also computes a per-batch value every step
        self.mean_loss[split].update(loss, weight=labels.numel())
        self.acc[split].update(probs, labels.long())
        return probs

    def _log_eval_metrics(self, split: str) -> None:
        """Once an epoch, at its end: Lightning computes and resets the logged metrics.
        Logging them every step cost ~2 ms a `self.log` call on CPU: experiment=keras_mlp
        (40 validation steps an epoch) fitted in 7.4 s before, 6.7 s after."""
        self.log(f"{split}/loss", self.mean_loss[split])
        self.log(f"{split}/acc", self.acc[split], prog_bar=True)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if self.adversarial_eps:  # trains on both terms, reports the plain loss
            total, loss, probs, labels = adversarial_step(
                lambda: self.model_step(batch),
                embedding_of(self.net),
                self.adversarial_eps,
                self.parameters(),
            )
        else:
            loss, probs, labels = self.model_step(batch)
            total = loss
        aux = network_terms(self.net, labels, self._loss)
        if aux is not None:  # reported apart: train/loss stays the sentiment loss
            total = total + aux
        self._train_sums.add(loss, probs, labels, aux)
        if batch_idx % NAN_CHECK_EVERY == 0:
            self._check_finite(total)
        return total

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):  # stop now, not after hours of NaN epochs
            raise SentimentError(
                f"the training loss became {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}: lower model.optimizer.lr or set trainer.gradient_clip_val"
            )

    def on_train_epoch_start(self) -> None:
        self._train_sums = TrainSums()
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        # Training, validation and the epoch's checkpoints (saved at validation's end):
        # the figure to set beside Keras' time an epoch, without fit's one-off setup.
        seconds = time.perf_counter() - self._epoch_start
        self._record({"seconds": round(seconds, 3)})
        sums = self._train_sums.stacked()
        if sums is None:
            return
        loss_sum, correct, count, *aux = self.trainer.strategy.reduce(sums, reduce_op="sum")
        self._check_finite(loss_sum)
        self._log_epoch("train", loss_sum / count, correct / count)
        if aux:
            self.log("train/aux_loss", aux[0] / count)
            self._record({"train/aux_loss": float(aux[0] / count)})

    def _log_epoch(self, split: str, loss: torch.Tensor, acc: torch.Tensor) -> None:
        self.log(f"{split}/loss", loss, prog_bar=split == "train")
        self.log(f"{split}/acc", acc, prog_bar=True)
        self._record({f"{split}/loss": float(loss), f"{split}/acc": float(acc)})

    def _record(self, values: dict) -> None:
        """Add this epoch's figures to the history (curves.png, metrics.json)."""
        row = self.history.setdefault(self.current_epoch, {"epoch": self.current_epoch + 1})
        row.update(values)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def test_step(self, batch, batch_idx: int) -> None:
        probs = self._eval_step(batch, "test")
        self.test_outputs.append((batch[2].cpu(), probs.detach().float().cpu()))  # for the reports

    def on_test_epoch_end(self) -> None:
        self._log_eval_metrics("test")

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(corpus indices, P(positive)) of the last test run, from every rank.

        Under DDP all ranks must call this (it gathers); shards may differ in size.
        """
        index, probs = (torch.cat(t) for t in zip(*self.test_outputs, strict=True))
        return gather_rows(self, index, probs)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch[0]).float())

    def on_train_start(self) -> None:
        # The sanity check ran validation already; its numbers must not count as "best".
        self.mean_loss["val"].reset()
        self.acc["val"].reset()
        self.val_acc_best.reset()
        for row in self.history.values():  # a resumed run's epochs so far (empty when new)
            if "val/acc" in row:
                self.val_acc_best(torch.tensor(row["val/acc"], device=self.device))
        replay_plateau_steps(self.trainer, self.history, self.current_epoch)
        changes, self._resume_changes = self._resume_changes, {}
        apply_resume_changes(self.trainer, changes)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_metrics("val")
        if self.trainer.sanity_checking:
            return
        acc = self.acc["val"].compute()
        self.val_acc_best(acc)
        best = self.val_acc_best.compute()
        self._record({"val/loss": float(self.mean_loss["val"].compute()), "val/acc": float(acc)})
        self.log("val/acc_best", best, sync_dist=True, prog_bar=True)
        self.log("hp_metric", best, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = list(self.history.values())  # curves survive a resume
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is None or self.trainer.state.fn == TrainerFn.FITTING:  # resuming, not testing
            self.history = {row["epoch"] - 1: row for row in checkpoint.get("history", [])}
            self._resume_changes = changed_settings(checkpoint.get("hyper_parameters", {}), self.hparams)
        restore_rng_states(checkpoint)  # a resumed run draws the same dropout masks

    def setup(self, stage: str) -> None:
        fit_network_to_data(self.net, self._trainer, stage, self.resuming)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        # Lightning's, which refuses a fused optimizer in mixed precision; ours does not
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict:
        optimizer, scheduler = build_optimization(
            self.hparams.optimizer, self.hparams.scheduler, self.parameters()
        )
        if scheduler is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
