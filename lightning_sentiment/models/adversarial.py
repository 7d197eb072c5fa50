"""Adversarial training on word embeddings (Miyato, Dai & Goodfellow 2017).

The training loss gains a second term: the loss of the same batch with each row's
embeddings moved in the direction that raises the loss most, to first order, by an L2
norm (over the row's tokens and dimensions) of `eps * sqrt(n)` for a row of n real
tokens: `eps` a token on average, so a review split into segments is perturbed as much
as read whole. Miyato et al.'s IMDB setting, 5.0 a review of ~250 tokens on embeddings
of unit variance (ours have that scale), is about 0.3 a token. The network must embed its
tokens through one `embedding` module called once per forward (the LSTMs do; the
bag-of-words MLP has none). Costs about two plain steps: the clean loss's backward gives
both the direction and the parameters' share of the gradient, and its graph is freed
before the perturbed forward, so one graph is held at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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


def adversarial_step(step: Step, embedding: nn.Module, eps: float, params: Iterable[nn.Parameter]):
    """Run `step` (-> loss, probs, labels) twice: as it is, then on embeddings perturbed
    against the first loss. Returns (loss + adversarial loss, loss, probs, labels); the
    first has the gradient of both terms with respect to `params`.

    The CPU random state is replayed for the second run, so it draws the same segment
    offsets (the perturbation's shape depends on them) and, on CPU, the same dropout.
    """
    params = [p for p in params if p.requires_grad]
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
    # One backward of the clean loss for the direction and the parameters' gradient, which
    # frees its graph: holding it for one backward of both terms cost a third backward pass
    # and two graphs' memory. Scaled so half-precision gradients do not underflow (a power
    # of two: undone exactly below); the direction is scale-free.
    grads = torch.autograd.grad(loss * GRAD_SCALE, [embedded, *params], allow_unused=True)
    shift = direction(grads[0], eps, tokens)  # a constant: no gradient flows through the direction
    torch.set_rng_state(rng)
    handle = embedding.register_forward_hook(lambda module, inputs, output: output + shift)
    try:
        adversarial, _, _ = step()
    finally:
        handle.remove()
    # sum(p * g) has gradient g in p: the clean gradient rides on the returned loss, through
    # Lightning's backward (loss scaling, accumulation, clipping), and adds nothing to its value
    carried = loss.new_zeros(())
    for param, grad in zip(params, grads[1:], strict=True):
        if grad is not None:
            carried = carried + (param * grad).sum() / GRAD_SCALE  # no unscaled copy of each grad
    return loss.detach() + adversarial + (carried - carried.detach()), loss.detach(), probs, labels
