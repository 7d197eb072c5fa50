"""A bidirectional LSTM layer's two directions run at the same time, one a CPU thread.

oneDNN's LSTM kernel runs a small LSTM (the Keras tutorials' 32 units) at a fixed cost
a time step that a second core does not shorten: one thread runs a direction as fast
as two. So the two directions, each its own kernel call, run on two threads at once,
in the forward pass and in the backward pass (one `torch.autograd.grad` a direction
and thread; autograd would otherwise run both backward kernels one after the other).
Same arithmetic, same results as calling the layers one after the other (tested).
The worker thread gets half the calling thread's torch threads: two teams of all
cores' OpenMP threads, spinning between kernels, made both directions several times
slower (README, Performance). For a large LSTM (256 or 512 units, `bilstm`'s) one call
on all cores is faster: leave it off there.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from torch.func import functional_call

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:  # one worker: the calling thread runs the other direction
        _POOL = ThreadPoolExecutor(1, thread_name_prefix="lstm-direction")
    return _POOL


def _in_context(fn, threads: int):
    """fn, to run on another thread with `threads` torch threads, under the calling
    thread's grad, inference and CPU autocast modes (all three thread-local)."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    autocast = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    def run():
        if torch.get_num_threads() != threads:  # the worker keeps it from call to call
            torch.set_num_threads(threads)
        with (
            torch.inference_mode(inference),
            torch.set_grad_enabled(grad),
            torch.autocast("cpu", dtype=autocast[1], enabled=autocast[0]),
        ):
            return fn()

    return run


def _graph(layer: nn.LSTM, x: torch.Tensor, params: tuple[torch.Tensor, ...]):
    """layer over x (B, T, I) -> (B, T, H) on detached leaves, its own autograd graph."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(x.requires_grad)
        leaves = [p.detach().requires_grad_() for p in params]
        names = [name for name, _ in layer.named_parameters()]
        out = functional_call(layer, dict(zip(names, leaves, strict=True)), (x,))[0]
    return out, x, leaves


def _grads(graph, grad_out: torch.Tensor):
    out, x, leaves = graph
    inputs = [x, *leaves] if x.requires_grad else leaves
    grads = torch.autograd.grad(out, inputs, grad_out)
    return grads if x.requires_grad else (None, *grads)


def _together(here, there):
    """here() on this thread and there() on the worker (with half this thread's torch
    threads) at once. This thread's own count is left alone: changing it at every call
    cost more than it saved (README, Performance); `threads=1` on 2 cores suits."""
    later = _pool().submit(_in_context(there, max(1, torch.get_num_threads() // 2)))
    return here(), later.result()


class _BothDirections(torch.autograd.Function):
    @staticmethod
    def forward(ctx, forward_layer, backward_layer, x_forward, x_backward, *params):
        n = len(params) // 2  # the forward layer's parameters, then the backward layer's
        first, second = _together(
            lambda: _graph(forward_layer, x_forward, params[:n]),
            lambda: _graph(backward_layer, x_backward, params[n:]),
        )
        ctx.graphs = (first, second)
        return first[0].detach(), second[0].detach()

    @staticmethod
    def backward(ctx, grad_forward, grad_backward):
        first, second = ctx.graphs
        grads_first, grads_second = _together(
            lambda: _grads(first, grad_forward), lambda: _grads(second, grad_backward)
        )
        del ctx.graphs
        return None, None, grads_first[0], grads_second[0], *grads_first[1:], *grads_second[1:]


def both_directions(
    forward_layer: nn.LSTM, backward_layer: nn.LSTM, x_forward: torch.Tensor, x_backward: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward_layer(x_forward)[0], backward_layer(x_backward)[0]), on two threads.

    x_backward: the input already reversed within each sequence. Returns (B, T, H) each.
    """
    if not torch.is_grad_enabled():  # evaluation: no graph to split
        return _together(lambda: forward_layer(x_forward)[0], lambda: backward_layer(x_backward)[0])
    params = (*forward_layer.parameters(), *backward_layer.parameters())
    return _BothDirections.apply(forward_layer, backward_layer, x_forward, x_backward, *params)
