"""Keras' `recurrent_dropout` for a one-layer `nn.LSTM`: an LSTM run step by step.

torch's and cuDNN's fused LSTM kernels have no recurrent dropout, so training with it
runs the same gate arithmetic one time step at a time in Python (as Keras itself
falls back from cuDNN to a generic loop when `recurrent_dropout > 0`): slower, the
same weights. Evaluation always uses the fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def recurrent_dropout_mask(x: torch.Tensor, hidden: int, p: float) -> torch.Tensor:
    """One mask a sequence (B, H), kept for all its time steps: zeros with probability
    p, the rest 1 / (1 - p), as Keras draws it (`get_recurrent_dropout_mask`)."""
    return F.dropout(x.new_ones(x.shape[0], hidden), p, training=True)


def lstm_steps(layer: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`layer(x)[0]` with the previous state h multiplied by `mask` (B, H) before it
    enters the recurrent matrix at every step, Keras' recurrent dropout (the carried
    state itself is not masked). x (B, T, I) -> outputs (B, T, H)."""
    if layer.num_layers != 1 or layer.bidirectional or not layer.batch_first:
        raise ValueError("lstm_steps runs one batch-first, one-direction LSTM layer")
    batch, hidden = x.shape[0], layer.hidden_size
    bias = layer.bias
    # every step's input contribution in one product: (B, T, 4H)
    inputs = F.linear(x, layer.weight_ih_l0, layer.bias_ih_l0 if bias else None)
    recurrent_bias = layer.bias_hh_l0 if bias else None
    h = c = x.new_zeros(batch, hidden, dtype=inputs.dtype)
    outputs = []
    for step in range(x.shape[1]):
        gates = inputs[:, step] + F.linear(h * mask, layer.weight_hh_l0, recurrent_bias)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # torch's gate order: input, forget, cell, output
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, dim=1)
