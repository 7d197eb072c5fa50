"""How `LSTMClassifier`'s layers read a batch: one call a layer and direction over the
padded grid, or, on a CPU, the whole stack and the pooling a group of rows of similar
length at a time (`length_groups`), each group read only as many steps as its longest
row; and a bidirectional layer's two directions one after the other or on two threads
(`parallel_directions`)."""

from __future__ import annotations

import torch
from torch import nn

from lightning_sentiment.models.directions import both_directions
from lightning_sentiment.models.recurrent import train_lstm
from lightning_sentiment.models.sequences import group_rows, length_groups, reverse_within


class LayerReading:
    """`LSTMClassifier`'s layer stack (`forward_layers`, `backward_layers`) and the
    settings it reads them with; a mixin, so the state dict keeps its keys."""

    def _layers(self, h: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """The LSTM stack over h (B, T, E): the last layer's directions, (B, T, H) each,
        the backward one reversed within each length."""
        ones = h.new_ones(*h.shape[:2], 1) if self.keras_bias else None  # (B, T, 1)
        last = len(self.forward_layers) - 1
        for i, fwd in enumerate(self.forward_layers):
            if ones is not None:
                h = torch.cat([h, ones], dim=-1)
            if self.bidirectional:
                x_reversed = reverse_within(h, lengths)
                out, back = self._run_both(fwd, self.backward_layers[i], h, x_reversed)
                directions = [out, back]  # back: reversed within each length
            else:
                directions = [self._run(fwd, h)]  # (B, T, H)
            if i < last:  # the next layer reads the directions in step order: (B, T, H or 2H)
                if self.bidirectional:
                    directions = [directions[0], reverse_within(directions[1], lengths)]
                    h = self.dropout(torch.cat(directions, dim=-1))
                else:
                    h = self.dropout(directions[0])
        return directions

    def _grouping(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor | None, list | None]:
        """(row order, groups) for reading h's rows (B, T, E) in length groups
        (`sequences.length_groups`), or (None, None) for one call over the whole grid: when
        off, on a GPU (where a step's cost is mostly the host's per call: README, On a GPU),
        with dropout inside the layers or the next-word loss (their draws would change), or
        when one group would read it all anyway."""
        draws = self.weight_dropout or self.recurrent_dropout or (self.training and self.next_word)
        if not self.length_groups or h.device.type != "cpu" or draws:
            return None, None
        lengths, order = lengths.sort(descending=True, stable=True)
        groups = length_groups(lengths.tolist())
        if len(groups) == 1 and groups[0][2] == h.shape[1]:
            return None, None
        return order, groups

    def _grouped_parts(
        self, h: torch.Tensor, lengths: torch.Tensor, order: torch.Tensor, groups: list
    ) -> list[torch.Tensor]:
        """The pooled parts (`Pooling.forward`) of h's rows (B, T, E) in `order`, each group
        of `_grouping` read through the whole stack and pooled on its own: no state tensor
        is padded back to the grid. `lengths` (B,) are already in `order`. Dropout between
        layers falls on the rows in group order: the same distribution, other draws."""
        pooled = []
        for rows, (start, end, _) in zip(group_rows(h, order, groups), groups, strict=True):
            pooled.append(self.pool(self._layers(rows, lengths[start:end]), lengths[start:end]))
        return [torch.cat(kind) for kind in zip(*pooled, strict=True)]  # a kind's (B, ...)

    def _run(self, layer: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        """One LSTM layer over x (B, T, I) -> (B, T, H), with its dropouts in training."""
        if self.training:
            return train_lstm(layer, x, self.recurrent_dropout, self.weight_dropout)
        return layer(x)[0]

    def _run_both(
        self, fwd: nn.LSTM, bwd: nn.LSTM, x: torch.Tensor, x_reversed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A bidirectional layer's two directions, (B, T, H) each; on two CPU threads at
        once with `parallel_directions` (their dropouts run the layers one by one)."""
        dropouts = self.training and (self.recurrent_dropout > 0 or self.weight_dropout > 0)
        if self.parallel_directions and x.device.type == "cpu" and not dropouts:
            return both_directions(fwd, bwd, x, x_reversed)
        return self._run(fwd, x), self._run(bwd, x_reversed)
