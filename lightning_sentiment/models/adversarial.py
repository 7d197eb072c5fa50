"""Adversarial training on word embeddings (Miyato, Dai & Goodfellow 2017).

The training loss gains a second term: the loss of the same batch with each row's
embeddings moved in the direction that raises the loss most, to first order, by an L2
norm (over the row's tokens and dimensions) of `eps * sqrt(n)` for a row of n real
tokens: `eps` a token on average, so a review split into segments is perturbed as much
as read whole. Miyato et al.'s IMDB setting, 5.0 a review of ~250 tokens on embeddings
of unit variance (ours have that scale), is about 0.3 a token. The network must embed its
tokens through one `embedding` module called once per forward (the LSTMs do; the
bag-of-words MLP has none). Costs about 2.5x a plain step: one more forward pass and
two more backward passes (one for the direction, one for the second term).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lightning_sentiment.errors import SettingError

GRAD_SCALE = 1024.0
Step = Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def embedding_of(net: nn.Module) -> nn.Module:
    embedding = getattr(net, "embedding", None)
    if not isinstance(embedding, nn.Embedding):
        raise SettingError(
            f"model.adversarial_eps needs a network with a word embedding ({type(net).__name__} has "
            "none): use it with model=lstm or model=bilstm, or set model.adversarial_eps=0"
        )
    return embedding


def direction(grad: torch.Tensor, eps: float, tokens: torch.Tensor) -> torch.Tensor:
    """grad (rows, T, E) -> a perturbation along it of L2 norm `eps * sqrt(n)` per row of
    n real tokens (ids != 0 in tokens (rows, T)), (rows, T, E)."""
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)  # (rows,)
    sizes = eps * (tokens != 0).sum(1).to(grad.dtype).sqrt()  # (rows,)
    return grad * (sizes / norms)[:, None, None]


def adversarial_step(step: Step, embedding: nn.Module, eps: float):
    """Run `step` (-> loss, probs, labels) twice: as it is, then on embeddings perturbed
    against the first loss. Returns (loss + adversarial loss, loss, probs, labels).

    The CPU random state is replayed for the second run, so it draws the same segment
    offsets (the perturbation's shape depends on them) and, on CPU, the same dropout.
    """
    rng = torch.get_rng_state()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (token ids, embeddings)
    handle = embedding.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    try:
        loss, probs, labels = step()
    finally:
        handle.remove()
    if len(seen) != 1:
        raise RuntimeError(f"adversarial training needs one embedding call a step, saw {len(seen)}")
    tokens, embedded = seen[0]
    # scaled so half-precision gradients do not underflow; the direction is scale-free
    (grad,) = torch.autograd.grad(loss * GRAD_SCALE, embedded, retain_graph=True)
    shift = direction(grad, eps, tokens)  # a constant: no gradient flows through the direction
    torch.set_rng_state(rng)
    handle = embedding.register_forward_hook(lambda module, inputs, output: output + shift)
    try:
        adversarial, _, _ = step()
    finally:
        handle.remove()
    return loss + adversarial, loss, probs, labels
