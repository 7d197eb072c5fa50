"""Pooling an LSTM's states over time into one feature vector a review (or a segment).

`max`, `mean` and `attn` ignore padded steps, and each has a merge that pools the
segments of a review (`LSTMClassifier.chunk`) as if their states were one sequence.
"""

from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("last", "max", "mean", "max_mean", "attn", "max_mean_attn")
# the poolings whose features sit side by side, in this order
KINDS = {"max_mean": ("max", "mean"), "max_mean_attn": ("max", "mean", "attn")}


def side_by_side(features: list[torch.Tensor]) -> torch.Tensor:
    """Poolings' (B, F) features concatenated to (B, k * F); one alone is not copied."""
    return features[0] if len(features) == 1 else torch.cat(features, dim=1)


class Attention(nn.Module):
    """Additive attention pooling (Yang et al. 2016): a step's score is u . tanh(W h + b),
    its weight the softmax of the scores over the real steps."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(hidden_dim, hidden_dim)
        self.context = nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States (B, T, H), real steps (B, T, 1) -> the weighted mean (B, H) and the
        scores' log-sum-exp (B, 1), which weighs this sequence when segments merge."""
        scores = self.context(torch.tanh(self.project(h))).masked_fill(~mask, float("-inf"))  # (B, T, 1)
        total = scores.logsumexp(1)  # (B, 1): finite, every sequence has a real step
        return (h * (scores - total[:, None]).exp()).sum(1), total


class Pooling(nn.Module):
    """Each direction's states (B, T, H) -> per pooling kind its features; `merge` turns
    segments' features into their reviews'. Features run by kind, then direction:
    [max fwd, max bwd, mean fwd, mean bwd] for a bidirectional max_mean."""

    def __init__(self, pooling: str, hidden_dim: int, directions: int) -> None:
        super().__init__()
        self.pooling = pooling
        self.kinds = KINDS.get(pooling, (pooling,))
        self.size = hidden_dim * directions * len(self.kinds)  # F
        # one attention a direction; none (no parameters, old checkpoints load) without attn
        attentions = directions if "attn" in self.kinds else 0
        self.attention = nn.ModuleList(Attention(hidden_dim) for _ in range(attentions))

    def forward(self, directions: list[torch.Tensor], lengths: torch.Tensor) -> list[torch.Tensor]:
        """-> one tensor a kind, (B, D * H); attn's carries its D log-sum-exps after,
        (B, D * H + D), for `merge` (`features` drops them).

        The backward direction's states are reversed within each length, so its state
        after the whole review sits, like the forward one's, at step `lengths - 1`."""
        if self.pooling == "last":
            rows = torch.arange(lengths.shape[0], device=lengths.device)
            return [side_by_side([h[rows, lengths - 1] for h in directions])]  # (B, D * H)
        steps = directions[0].shape[1]
        mask = torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)
        mask = mask[:, :, None]  # (B, T, 1)
        parts = []
        for kind in self.kinds:
            if kind == "max":
                parts.append(side_by_side([h.masked_fill(~mask, float("-inf")).amax(1) for h in directions]))
            elif kind == "mean":
                parts.append(side_by_side([(h * mask).sum(1) / lengths[:, None] for h in directions]))
            else:
                pairs = [att(h, mask) for att, h in zip(self.attention, directions, strict=True)]
                # (B, D * H + D): the means, then their log-sum-exps
                parts.append(torch.cat([p[0] for p in pairs] + [p[1] for p in pairs], dim=1))
        return parts

    def features(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The pooled parts of whole reviews -> their features (B, F)."""
        dropped = len(self.attention)  # attn's log-sum-exps
        kinds = zip(parts, self.kinds, strict=True)
        return side_by_side([p[:, : p.shape[1] - dropped] if k == "attn" else p for p, k in kinds])

    def merge(
        self, parts: list[torch.Tensor], lengths: torch.Tensor, slots: torch.Tensor, batch: int, n: int
    ) -> torch.Tensor:
        """Segments' parts (S, ...) -> their reviews' features (B, F), as if each review's
        states were pooled in one piece. Segment s of review b sits at slot b * n + j."""
        kinds = zip(parts, self.kinds, strict=True)
        return side_by_side([self._merge(p, lengths, slots, batch, n, k) for p, k in kinds])

    def _merge(
        self, pooled: torch.Tensor, lengths: torch.Tensor, slots: torch.Tensor, batch: int, n: int, kind: str
    ) -> torch.Tensor:
        rows = batch * n  # a (batch, n) grid of segment slots, the empty ones filled
        if kind == "max":
            return on_grid(pooled, slots, rows, float("-inf")).view(batch, n, -1).amax(1)
        if kind == "attn":  # weigh each segment's mean by its share of exp(scores)
            d = len(self.attention)
            means, totals = pooled[:, :-d], pooled[:, -d:]  # (S, D * H), (S, D)
            weights = on_grid(totals, slots, rows, float("-inf")).view(batch, n, d).softmax(1)  # (B, n, D)
            means = on_grid(means, slots, rows, 0.0).view(batch, n, d, -1)  # (B, n, D, H)
            return (means * weights[..., None]).sum(1).flatten(1)  # (B, D * H)
        # mean: weigh each segment's mean by its length
        sums = on_grid(pooled * lengths[:, None], slots, rows, 0.0).view(batch, n, -1).sum(1)
        return sums / on_grid(lengths, slots, rows, 0).view(batch, n).sum(1)[:, None]


def on_grid(values: torch.Tensor, slots: torch.Tensor, rows: int, fill: float) -> torch.Tensor:
    """Segments' values (S, ...) placed at their slots among `rows`, the rest `fill`."""
    return values.new_full((rows, *values.shape[1:]), fill).index_copy(0, slots, values)
