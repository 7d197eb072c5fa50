"""How `LSTMClassifier`'s layers read a batch: one call a layer and direction over the
padded grid, or, on a CPU, a call a group of rows of similar length (`length_groups`),
each read only as many steps as its longest row; and a bidirectional layer's two
directions one after the other or on two threads (`parallel_directions`)."""

from __future__ import annotations

import torch
from torch import nn

from lightning_sentiment.models.directions import both_directions
from lightning_sentiment.models.recurrent import train_lstm
from lightning_sentiment.models.sequences import by_groups, length_groups, reverse_within


class LayerReading:
    """`LSTMClassifier`'s layer stack (`forward_layers`, `backward_layers`) and the
    settings it reads them with; a mixin, so the state dict keeps its keys."""

    def _layers(
        self, h: torch.Tensor, lengths: torch.Tensor, groups: list | None = None
    ) -> list[torch.Tensor]:
        """The LSTM stack over h (B, T, E): the last layer's directions, (B, T, H) each,
        the backward one reversed within each length. `groups`: h's rows are sorted by
        length, longest first, and read in those groups (`_grouping`)."""
        ones = h.new_ones(*h.shape[:2], 1) if self.keras_bias else None  # (B, T, 1)
        last = len(self.forward_layers) - 1
        for i, fwd in enumerate(self.forward_layers):
            if ones is not None:
                h = torch.cat([h, ones], dim=-1)
            if self.bidirectional:
                x_reversed = reverse_within(h, lengths)
                out, back = self._run_both(fwd, self.backward_layers[i], h, x_reversed, groups)
                directions = [out, back]  # back: reversed within each length
            else:
                directions = [self._run(fwd, h, groups)]  # (B, T, H)
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
        with dropout inside the layers (their draws would change), or when one group would
        read it all anyway. Dropout between layers falls on the rows in group order."""
        if not self.length_groups or h.device.type != "cpu" or self.weight_dropout or self.recurrent_dropout:
            return None, None
        lengths, order = lengths.sort(descending=True, stable=True)
        groups = length_groups(lengths.tolist())
        if len(groups) == 1 and groups[0][2] == h.shape[1]:
            return None, None
        return order, groups

    def _run(self, layer: nn.LSTM, x: torch.Tensor, groups: list | None = None) -> torch.Tensor:
        """One LSTM layer over x (B, T, I) -> (B, T, H), with its dropouts in training; by
        `groups` of rows (`sequences.by_groups`) when given."""

        def run(part: torch.Tensor) -> torch.Tensor:
            if self.training:
                return train_lstm(layer, part, self.recurrent_dropout, self.weight_dropout)
            return layer(part)[0]

        return run(x) if groups is None else by_groups(run, x, groups)

    def _run_both(
        self, fwd: nn.LSTM, bwd: nn.LSTM, x: torch.Tensor, x_reversed: torch.Tensor, groups: list | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A bidirectional layer's two directions, (B, T, H) each; on two CPU threads at
        once with `parallel_directions` (one call each over the whole grid; their dropouts
        run the layers one by one)."""
        dropouts = self.training and (self.recurrent_dropout > 0 or self.weight_dropout > 0)
        if self.parallel_directions and x.device.type == "cpu" and not dropouts:
            return both_directions(fwd, bwd, x, x_reversed)
        return self._run(fwd, x, groups), self._run(bwd, x_reversed, groups)
