"""The sentiment loss of logits against 0/1 labels, the network's own training terms, and
the checks of their settings."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lightning_sentiment.errors import SettingError, check_choice

LOSSES = ("bce", "mse")


def check_loss_settings(loss: str, adversarial_eps: float, label_smoothing: float) -> None:
    """One-line errors for `model.loss`, `model.adversarial_eps` and `model.label_smoothing`."""
    check_choice("model.loss", loss, LOSSES)
    if adversarial_eps < 0:
        raise SettingError(f"model.adversarial_eps={adversarial_eps} must be >= 0 (0: off)")
    if not 0 <= label_smoothing < 1:
        raise SettingError(f"model.label_smoothing={label_smoothing} must be in [0, 1) (0: off)")


def sentiment_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str, smoothing: float) -> torch.Tensor:
    """`loss` ("bce" or "mse") of logits (N,) against labels (N,); `smoothing` eps moves the
    targets to 1 - eps/2 and eps/2 (0: off)."""
    targets = labels
    if smoothing:
        targets = labels * (1 - smoothing) + smoothing / 2  # 1 -> 1 - eps/2
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.mse_loss(torch.sigmoid(logits), targets)  # Keras' "mse" on the sigmoid output


def network_terms(
    net: torch.nn.Module, labels: torch.Tensor, loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor | None:
    """The network's own training terms of its last forward, weighted: its next-word loss,
    and each segment read as a review (`segment_loss`, scored by `loss_of` as the reviews
    are); None without them."""
    aux = getattr(net, "aux_loss", None)
    segments = getattr(net, "segment_logits", None)
    if segments is not None:
        logits, reviews = segments  # (S,), (S,)
        seg_loss = net.segment_loss * loss_of(logits.float(), labels[reviews])
        aux = seg_loss if aux is None else aux + seg_loss
    return aux
