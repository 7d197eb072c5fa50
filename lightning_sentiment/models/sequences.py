"""Token and state tensors of reviews of different lengths: left-aligning padded rows,
reversing rows within their lengths, cutting reviews into segments, reading rows in
groups of similar length."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def left_align(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move real tokens (id != 0) to the front of each row, keeping their order.

    Makes pre- and post-padded batches identical, so the LSTM never reads padding
    before a real token. Returns (tokens (B, T), lengths (B,)).
    """
    real = tokens != 0
    lengths = real.sum(1)
    if bool(real[:, 0].all()) or not bool((lengths < tokens.shape[1]).any()):
        return tokens, lengths  # already post-padded (or unpadded): skip the sort
    order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # (B, T)
    return tokens.gather(1, order), lengths


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first `lengths[b]` steps of each row of x (B, T, D); padding stays put."""
    batch, steps = x.shape[:2]
    # A batch without padding (common: truncated reviews, length-bucketed batches) is a
    # flip, 3-5x faster than indexing on CPU; the check syncs, so only there.
    if x.device.type == "cpu" and bool((lengths == steps).all()):
        return x.flip(1)
    t = torch.arange(steps, device=x.device)  # (T,)
    idx = lengths[:, None] - 1 - t  # (B, T)
    idx = torch.where(idx >= 0, idx, t)  # (B, T): the step each step reads
    rows = torch.arange(batch, device=x.device)
    # whole rows of D by index_select (backward: index_add) beat gather's per-element
    # index (2x on CPU at D 32)
    if not x.is_contiguous() and x.transpose(0, 1).is_contiguous():  # steps-first memory: kept
        flat = idx.t() * batch + rows  # (T, B): row b's step s sits at s * B + b
        out = x.transpose(0, 1).reshape(steps * batch, -1).index_select(0, flat.reshape(-1))
        return out.view(steps, batch, *x.shape[2:]).transpose(0, 1)
    flat = idx + rows[:, None] * steps  # (B, T)
    return x.reshape(batch * steps, -1).index_select(0, flat.view(-1)).view_as(x)


def split_segments(
    tokens: torch.Tensor, lengths: torch.Tensor, chunk: int, first: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Cut left-aligned reviews (B, T) into segments of `chunk` tokens, dropping empty ones.

    `first` (default `chunk`): the first segment holds that many tokens (padded to
    `chunk` at its end), the rest `chunk` each: segment boundaries moved.
    Returns (segments (S, chunk), their lengths (S,), their slot in the (B * n) grid (S,), n):
    segment k of review b sits in slot b * n + k.
    """
    if first is None or first >= chunk:  # the training path: one pad, a (B * n, chunk) view
        n = -(-tokens.shape[1] // chunk)  # segments a review: ceil(T / chunk)
        grid = nn.functional.pad(tokens, (0, n * chunk - tokens.shape[1])).view(-1, chunk)
        starts = torch.arange(n, device=tokens.device) * chunk  # (n,)
        seg_lengths = (lengths[:, None] - starts).clamp(0, chunk).view(-1)  # (B * n,)
    else:  # shifted: a first segment of `first` tokens padded to `chunk`, then `chunk` each
        rest = max(tokens.shape[1] - first, 0)
        n = 1 + -(-rest // chunk)  # segments a review: the first, then ceil(rest / chunk)
        head = tokens[:, :first]  # (B, min(T, first))
        head = nn.functional.pad(head, (0, chunk - head.shape[1]))  # (B, chunk)
        tail = nn.functional.pad(tokens[:, first:], (0, (n - 1) * chunk - rest))  # (B, (n-1) * chunk)
        grid = torch.cat([head, tail], dim=1).view(-1, chunk)  # (B * n, chunk)
        starts = torch.arange(n, device=tokens.device) * chunk - (chunk - first)  # (n,)
        starts[0] = 0
        sizes = torch.full((n,), chunk, device=tokens.device)
        sizes[0] = first
        seg_lengths = torch.minimum((lengths[:, None] - starts).clamp(min=0), sizes).view(-1)
    slots = (seg_lengths > 0).nonzero().squeeze(1)  # (S,)
    return grid[slots], seg_lengths[slots], slots, n


# What one more LSTM call costs, in segments' worth of steps: a group of n rows of t steps
# is priced t * (n + GROUP_COST). Of 4, 16 and 64, 16 trained the default lstm's steps
# fastest (0.88 of one call over the whole grid; 4 and 64: 0.94, 0.95; session 43). Rechecked
# on session 44's `group_rows`: 8 won one run (0.93x of 16) and lost its confirmation (1.06x).
GROUP_COST = 16.0


def length_groups(lengths: list[int], per_call: float = GROUP_COST) -> list[tuple[int, int, int]]:
    """Rows sorted by length, longest first -> groups (start, end, steps) of consecutive rows,
    each read for `steps` (its longest row's length) instead of the whole padded width.

    The cut minimises the steps computed plus `per_call` rows' worth a group (exact, by
    dynamic programming over the distinct lengths: at most a segment's width of them).
    """
    runs = [(value, len(list(rows))) for value, rows in itertools.groupby(lengths)]  # longest first
    values = [value for value, _ in runs]
    # rows up to each distinct length: values[k] spans rows ends[k]:ends[k + 1]
    ends = list(itertools.accumulate((count for _, count in runs), initial=0))
    best, cut = [0.0] + [float("inf")] * len(values), [0] * (len(values) + 1)
    for j in range(1, len(values) + 1):
        for i in range(j):  # the group of values[i:j], read for values[i] steps
            cost = best[i] + values[i] * (ends[j] - ends[i] + per_call)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(values)
    while j:
        groups.append((ends[cut[j]], ends[j], values[cut[j]]))
        j = cut[j]
    return groups[::-1]


class _GroupRows(torch.autograd.Function):
    """`group_rows` with a backward that writes every group's gradient into one zeroed
    (S, T, E) tensor: slicing and sorting h with autograd's own ops allocated a full-size
    gradient per group and per gather, each faulted in fresh (16 MB mmap threshold,
    `memory.py`), and lost the steps saved on a long batch (session 44).
    Each group is gathered steps first, (t, n, E), by one `index_select` over h's rows
    (S * T, E): a batch-first LSTM call transposes its input to steps first and copies it
    unless it is laid out so already, and `index_select` along any other dimension, or
    of a transposed view, copies the whole of h first (session 46)."""

    @staticmethod
    def forward(ctx, h, order, groups):
        batch, steps = h.shape[:2]
        flat = h.reshape(batch * steps, -1)  # (S * T, E): row s's step j at s * T + j
        # (t, n) each: group row i's step j at order[start + i] * T + j
        ctx.index = [
            torch.arange(t, device=h.device)[:, None] + order[start:end] * steps for start, end, t in groups
        ]
        ctx.shape = h.shape
        return tuple(
            flat.index_select(0, idx.view(-1)).view(*idx.shape, -1).transpose(0, 1)  # (n, t, E)
            for idx in ctx.index
        )

    @staticmethod
    def backward(ctx, *grads):
        batch, steps = ctx.shape[:2]
        grad = grads[0].new_zeros(batch * steps, *ctx.shape[2:])  # padding steps past a group's get none
        # autograd hands every output a gradient (zeros where unused): none is None
        for idx, part in zip(ctx.index, grads, strict=True):
            grad.index_copy_(0, idx.view(-1), part.transpose(0, 1).reshape(idx.numel(), -1))  # (t * n, E)
        return grad.view(ctx.shape), None, None


def group_rows(h: torch.Tensor, order: torch.Tensor, groups: list[tuple[int, int, int]]) -> tuple:
    """h (S, T, E) -> each group's rows (its `start:end` of `order`, the rows sorted by
    length) cut to its `steps`: (end - start, steps, E) each, views of steps-first memory."""
    return _GroupRows.apply(h, order, groups)
