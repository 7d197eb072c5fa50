"""Optional extras of `LSTMClassifier` beside its sentiment logit: the next-word loss
(`next_word`) and the review LSTM over segment features (`review_lstm`)."""

from __future__ import annotations

import torch
from torch import nn

from lightning_sentiment.models.pooling import on_grid


class NextWordHead(nn.AdaptiveLogSoftmaxWithLoss):
    """An adaptive softmax over the vocabulary: frequent words in the head, rarer ones in
    clusters of smaller projections. Its state keys are the adaptive softmax's own."""

    def __init__(self, hidden_dim: int, vocab_size: int) -> None:
        cutoffs = [c for c in (2000, 10000) if c < vocab_size - 1] or [max(1, vocab_size // 2)]
        super().__init__(hidden_dim, vocab_size, cutoffs, div_value=4)

    def sampled_loss(
        self,
        states: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        share: float,
        dropout: nn.Module,
    ) -> torch.Tensor:
        """Mean next-token loss of forward states (N, T, H) at a random `share` of the
        steps that have a next token in their row (N, T) of `lengths` (N,)."""
        steps = torch.arange(tokens.shape[1] - 1, device=tokens.device)
        pick = steps < (lengths[:, None] - 1)  # (N, T - 1): a next token exists
        pick &= torch.rand(pick.shape, device=pick.device) < share
        # the true next ids: word dropout zeroed embeddings, not the ids
        inputs, targets = dropout(states[:, :-1][pick]), tokens[:, 1:][pick]  # (P, H), (P,)
        if targets.numel() == 0:  # nothing drawn: a zero that keeps the head in the graph
            return states.sum() * 0.0
        return self(inputs.float(), targets).loss


def read_segments(
    review_lstm: nn.LSTM, segments: torch.Tensor, slots: torch.Tensor, batch: int, n: int
) -> torch.Tensor:
    """The review LSTM's state (B, R) after each review's last segment. The segments'
    features (S, F) fill the first of their review's `n` slots (reviews are
    left-aligned), so the empty slots after them never reach that state."""
    grid = on_grid(segments, slots, batch * n, 0.0).view(batch, n, -1)  # (B, n, F)
    counts = torch.bincount(slots // n, minlength=batch)  # (B,): >= 1, an empty review reads one step
    states = review_lstm(grid)[0]  # (B, n, R)
    return states[torch.arange(batch, device=grid.device), counts - 1]  # (B, R)
