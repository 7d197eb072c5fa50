"""`length_groups`: the LSTM layers read rows in groups of similar length, each for its
longest row's steps; the same logits and gradients as one call over the padded grid."""

import itertools

import pytest
import torch

from lightning_sentiment.models import LSTMClassifier
from lightning_sentiment.models import reading as reading_module
from lightning_sentiment.models.sequences import GROUP_COST, group_rows, length_groups


def cost(lengths, groups, per_call=GROUP_COST):
    return sum(t * (end - start + per_call) for start, end, t in groups)


def test_groups_cover_the_rows_in_order_each_read_for_its_longest_row():
    lengths = [50] * 100 + [31] * 3 + [25] * 100 + [7, 3]
    groups = length_groups(lengths)
    assert groups[0][0] == 0 and groups[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(groups))  # consecutive, no gap
    assert all(t == lengths[start] for start, _, t in groups)
    # 3 rows of 31 cost less read for 50 steps than in a call of their own; 7 and 3 join the 25s
    assert groups == [(0, 103, 50), (103, 205, 25)]
    assert length_groups([*lengths, 1])[-1] == (205, 206, 1)  # 1 * (1 + 16) < 25 steps more
    assert cost(lengths, groups) < cost(lengths, [(0, len(lengths), 50)])
    assert length_groups([50] * 10 + [25] * 10) == [(0, 20, 50)]  # a call costs more than 10 rows save


@pytest.mark.parametrize("seed", range(5))
def test_groups_are_the_cheapest_cut(seed):
    """Against every cut of the distinct lengths into consecutive groups (brute force)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = sorted(torch.randint(1, 9, (30,), generator=generator).tolist(), reverse=True)
    bounds = [i for i in range(1, len(lengths)) if lengths[i] != lengths[i - 1]]
    best = min(
        cost(lengths, [(a, b, lengths[a]) for a, b in itertools.pairwise([0, *cut, len(lengths)])], 2.0)
        for k in range(len(bounds) + 1)
        for cut in itertools.combinations(bounds, k)
    )
    assert cost(lengths, length_groups(lengths, per_call=2.0), 2.0) == best


def reviews(batch: int = 48, steps: int = 70) -> torch.Tensor:
    """Post-padded reviews (B, T) of random lengths 1..T, ids 2..19."""
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    tokens = torch.randint(2, 20, (batch, steps), generator=generator)
    return tokens * (torch.arange(steps)[None, :] < lengths[:, None])


def twin_nets(**kwargs) -> tuple[LSTMClassifier, LSTMClassifier]:
    torch.manual_seed(0)
    kwargs = {"pooling": "max_mean", "chunk": 10, **kwargs}
    grid = LSTMClassifier(20, 8, 6, **kwargs)
    grouped = LSTMClassifier(20, 8, 6, length_groups=True, **kwargs)
    grouped.load_state_dict(grid.state_dict())
    return grid, grouped


def logits_and_grads(net: LSTMClassifier, tokens: torch.Tensor):
    net.zero_grad()
    torch.manual_seed(1)  # the same dropout masks and segment offsets for both nets
    logits = net(tokens)
    loss = (logits * torch.linspace(-1, 1, len(tokens))).sum()
    (loss if net.aux_loss is None else loss + net.aux_loss).backward()  # the next-word head's too
    return logits.detach(), {name: p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.parametrize(
    "settings",
    [
        {"dropout": 0.3},
        {"dropout": 0.3, "bidirectional": True},
        # between two layers dropout would fall on the rows in group order: the same
        # distribution, other draws; without it, the same figures
        {"bidirectional": True, "num_layers": 2, "keras_bias": True},
        # whole reviews: the pooled features go back to the batch's order
        {
            "dropout": 0.3,
            "bidirectional": True,
            "chunk": None,
            "random_offsets": False,
            "shifted_eval": False,
        },
    ],
    ids=["lstm", "bilstm", "two-layer-bilstm", "whole-reviews"],
)
def test_grouped_reading_trains_and_evaluates_like_the_padded_grid(settings, monkeypatch):
    tokens = reviews()
    settings = {"word_dropout": 0.2, "random_offsets": True, "shifted_eval": True, **settings}
    grid, grouped = twin_nets(**settings)
    calls = []
    group_rows = reading_module.group_rows
    monkeypatch.setattr(
        reading_module, "group_rows", lambda h, order, g: calls.append(len(g)) or group_rows(h, order, g)
    )
    logits, grads = logits_and_grads(grouped.train(), tokens)
    assert calls and max(calls) > 1  # rows were read in several groups
    expected, expected_grads = logits_and_grads(grid.train(), tokens)
    torch.testing.assert_close(logits, expected)
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, expected_grads[name], msg=name)
    calls.clear()
    with torch.inference_mode():  # evaluation: two readings, both grouped
        torch.testing.assert_close(grouped.eval()(tokens), grid.eval()(tokens))
    assert len(calls) >= 1 + grouped.shifted_eval


@pytest.mark.parametrize("dropout", ["weight_dropout", "recurrent_dropout", "next_word"])
def test_draws_over_the_states_keep_one_call_and_their_draws(dropout, monkeypatch):
    """Weight drop draws one mask a batch, recurrent dropout one a row a call, the next-word
    loss its steps over the (S, T) grid: reading in groups would change their draws, so
    those nets keep one call over the grid in training."""
    grid, grouped = twin_nets(**{dropout: 0.3})
    monkeypatch.setattr(reading_module, "group_rows", lambda *args: pytest.fail(f"grouped under {dropout}"))
    logits, grads = logits_and_grads(grouped.train(), reviews())
    expected, expected_grads = logits_and_grads(grid.train(), reviews())
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(grads, expected_grads)
    if grouped.aux_loss is not None:
        torch.testing.assert_close(grouped.aux_loss, grid.aux_loss)


def test_grouped_rows_carry_their_gradient_back_to_each_row_and_step():
    """`group_rows`' own backward: the gradient autograd's indexing and slicing give."""
    generator = torch.Generator().manual_seed(3)
    h = torch.randn(7, 5, 3, generator=generator, requires_grad=True)
    order = torch.tensor([4, 0, 6, 2, 1, 5, 3])
    groups = [(0, 2, 5), (2, 5, 3), (5, 7, 1)]
    weights = [torch.randn(end - start, t, 3, generator=generator) for start, end, t in groups]
    parts = group_rows(h, order, groups)
    for part, (start, end, t) in zip(parts, groups, strict=True):
        torch.testing.assert_close(part, h[order[start:end], :t])
        # steps-first memory, so the batch-first LSTM call copies nothing to transpose it
        assert part.transpose(0, 1).is_contiguous()
    (grad,) = torch.autograd.grad(sum((p * w).sum() for p, w in zip(parts, weights, strict=True)), h)
    (expected,) = torch.autograd.grad(
        sum((h[order[s:e], :t] * w).sum() for (s, e, t), w in zip(groups, weights, strict=True)), h
    )
    torch.testing.assert_close(grad, expected)
    assert grad[order[5:], 1:].abs().sum() == 0  # steps past a group's are padding: no gradient
