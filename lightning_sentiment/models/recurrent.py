"""Dropout inside one-layer `nn.LSTM`s, in training: Keras' recurrent dropout and
AWD-LSTM's weight drop.

torch's and cuDNN's fused LSTM kernels have no recurrent dropout, so training with it
runs the same gate arithmetic one time step at a time in Python (as Keras itself
falls back from cuDNN to a generic loop when `recurrent_dropout > 0`): slower, the
same weights. Weight drop (Merity et al. 2018) drops entries of the recurrent matrix
instead, once a batch, and keeps the fused kernel. Evaluation uses the fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def recurrent_dropout_mask(x: torch.Tensor, hidden: int, p: float) -> torch.Tensor:
    """One mask a sequence (B, H), kept for all its time steps: zeros with probability
    p, the rest 1 / (1 - p), as Keras draws it (`get_recurrent_dropout_mask`)."""
    return F.dropout(x.new_ones(x.shape[0], hidden), p, training=True)


def dropped_weight(weight: torch.Tensor, p: float) -> torch.Tensor:
    """The recurrent matrix (4H, H) with a share p of its entries zeroed, the rest
    scaled by 1 / (1 - p): drawn once a batch, used at every step."""
    return F.dropout(weight, p, training=True)


def train_lstm(
    layer: nn.LSTM, x: torch.Tensor, recurrent_dropout: float, weight_dropout: float
) -> torch.Tensor:
    """`layer(x)[0]` in training, x (B, T, I) -> (B, T, H), with either dropout (or both)."""
    weight_hh = layer.weight_hh_l0
    if weight_dropout > 0:
        weight_hh = dropped_weight(weight_hh, weight_dropout)
    if recurrent_dropout > 0:
        return lstm_steps(
            layer, x, recurrent_dropout_mask(x, layer.hidden_size, recurrent_dropout), weight_hh
        )
    if weight_dropout > 0:  # the layer's own (fused) call with the dropped matrix
        return functional_call(layer, {"weight_hh_l0": weight_hh}, (x,))[0]
    return layer(x)[0]


def lstm_steps(
    layer: nn.LSTM, x: torch.Tensor, mask: torch.Tensor, weight_hh: torch.Tensor | None = None
) -> torch.Tensor:
    """`layer(x)[0]` with the previous state h multiplied by `mask` (B, H) before it
    enters the recurrent matrix at every step, Keras' recurrent dropout (the carried
    state itself is not masked). x (B, T, I) -> outputs (B, T, H). `weight_hh`: the
    recurrent matrix to use instead of the layer's (weight drop)."""
    if layer.num_layers != 1 or layer.bidirectional or not layer.batch_first:
        raise ValueError("lstm_steps runs one batch-first, one-direction LSTM layer")
    batch, hidden = x.shape[0], layer.hidden_size
    bias = layer.bias
    # every step's input contribution in one product: (B, T, 4H)
    inputs = F.linear(x, layer.weight_ih_l0, layer.bias_ih_l0 if bias else None)
    recurrent_bias = layer.bias_hh_l0 if bias else None
    weight_hh = layer.weight_hh_l0 if weight_hh is None else weight_hh
    h = c = x.new_zeros(batch, hidden, dtype=inputs.dtype)
    outputs = []
    for step in range(x.shape[1]):
        gates = inputs[:, step] + F.linear(h * mask, weight_hh, recurrent_bias)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # torch's gate order: input, forget, cell, output
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, dim=1)
