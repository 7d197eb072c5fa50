"""`MultiHotMLP`: a bag-of-words MLP over the vocabulary (Chollet's IMDB model)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_sentiment.errors import SettingError, check_choice, check_count, check_share

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
WEIGHTINGS = ("binary", "count", "nb")
# Up to this vocabulary the (batch, vocab) matrix and one matrix product beat the bag's
# per-row dedupe, gather and scatter on CPU. Plain-loop epoch of experiment=keras_mlp
# (batch 512, 2 CPU cores), dense vs bag: 2k words 0.16 vs 0.23-0.27 s, 5k 0.18-0.24
# vs 0.21-0.22, 10k 0.29-0.35 vs 0.23-0.29.
DENSE_MAX_VOCAB = 5_000
# GPUs: a scatter and one product; the bag path's sort costs more there (not re-measured).
DENSE_MAX_VOCAB_CUDA = 20_000


def dedupe_rows(tokens: torch.Tensor) -> torch.Tensor:
    """Replace repeated ids in each row by padding (0): a multi-hot needs presence only."""
    ordered = tokens.sort(dim=1).values  # (B, T)
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return ordered.masked_fill(repeat, 0)


def rows_distinct(tokens: torch.Tensor) -> bool:
    """Whether each row's ids (B, T) ascend strictly, padding (0) anywhere: true of the
    batches of `data.distinct=true`, which then need no dedupe (0.1-0.3 ms a batch).

    The first row is checked alone first: a review as written repeats a word almost
    always, so batches that are not distinct (the default) cost ~0.5 ms less a step.
    """
    if tokens.shape[1] < 2:
        return True

    def ascending(rows: torch.Tensor) -> bool:
        following = rows[:, 1:]
        return bool(((following == 0) | (following > rows.cummax(1).values[:, :-1])).all())

    return ascending(tokens[:1]) and ascending(tokens)


def sort_rows(tokens: torch.Tensor, vocab_size: int) -> np.ndarray:
    """Each row of tokens (B, T), ids below vocab_size, ascending, as a numpy array (CPU only).

    numpy's vectorized sort of short rows in the narrowest type that holds the ids:
    uint16 up to 65,536 words (0.22 ms a `keras_mlp` training batch of 512 x ~200
    against 0.31 ms as int32, AVX-512), then int32, then int64. torch's sort of the
    flat keys `row * vocab_size + id` (the way before session 18) took 4-8x longer.
    """
    dtype = np.uint16 if vocab_size <= 2**16 else np.int32 if vocab_size <= 2**31 else np.int64
    return np.sort(tokens.numpy().astype(dtype), axis=1)


def flat_ids(tokens: torch.Tensor, vocab_size: int, distinct: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-padding ids of tokens (B, T), row after row: (ids (N,), counts (B,)).

    distinct: each id once per row (ascending), as a multi-hot needs. Rows that are so
    already (`data.distinct=true`) are only flattened. Otherwise each row is sorted
    (`sort_rows`) and its repeats dropped. numpy throughout: its selection through the
    flat positions of a mask is 2-3x faster than a 2-D boolean index, numpy's or torch's
    (session 29: `keras_mlp`'s dedupe 0.94 -> ~0.5 ms a training batch).
    """
    if distinct and tokens.numel() and int(tokens.max()) >= vocab_size:
        raise IndexError(f"token id {int(tokens.max())} is out of range for a vocabulary of {vocab_size}")
    if not distinct or rows_distinct(tokens):
        array = tokens.numpy()  # (B, T)
        keep, flat = array != 0, array.ravel()
    else:
        ordered = sort_rows(tokens, vocab_size)  # (B, T), padding (0) first in each row
        # an id's first place in its sorted row (0 before the row): new ids, never padding
        keep = np.diff(ordered, axis=1, prepend=ordered.dtype.type(0)) != 0  # (B, T)
        flat = ordered.ravel()
    ids = torch.from_numpy(flat[np.flatnonzero(keep)].astype(np.int64))  # (N,)
    return ids, torch.from_numpy(np.count_nonzero(keep, axis=1))


def rows_of(counts: torch.Tensor, n: int) -> torch.Tensor:
    """The row of each of n ids listed row after row, counts (B,) a row: (n,)."""
    return torch.arange(len(counts), device=counts.device).repeat_interleave(counts, output_size=n)


class _BagSum(torch.autograd.Function):
    """Each row's sum of `weight[id] * per-id weight` over its ids (from `flat_ids`): (B, H).

    EmbeddingBag's forward, and a backward that sums each id's row gradients into its
    weight row. EmbeddingBag's own CPU backward sorts every id of the batch first: 15 ms
    of the default MLP's 28 ms step (bigrams, 100k ids, batch 512) against ~7 ms here.
    CPU only: flattening is a host sync on a GPU.
    """

    @staticmethod
    def forward(ctx, ids, counts, id_weights, weight):  # (N,), (B,), (N,) or None, (V, H)
        # each id's row is made in backward only: evaluation never needs it
        ctx.save_for_backward(ids, counts, id_weights)
        ctx.weight_shape = weight.shape
        offsets = counts.cumsum(0) - counts  # (B,) where each row's ids start in `ids`
        return F.embedding_bag(ids, weight, offsets, mode="sum", per_sample_weights=id_weights)

    @staticmethod
    def backward(ctx, grad):  # grad (B, H)
        ids, counts, id_weights = ctx.saved_tensors
        # contiguous: an expanded grad (from a sum) makes index_select 10x slower
        per_id = grad.contiguous().index_select(0, rows_of(counts, len(ids)))  # (N, H)
        if id_weights is not None:
            per_id = per_id * id_weights[:, None]
        # index_add_ sums the rows of an id that appears in several reviews; on CPU it is
        # 1.3-3x faster than index_put_(accumulate=True)
        grad_weight = grad.new_zeros(ctx.weight_shape).index_add_(0, ids, per_id)
        return None, None, None, grad_weight


class MultiHotMLP(nn.Module):
    """multi-hot(vocab) -> [Linear -> activation -> dropout]* -> one logit.

    Hidden layers: `hidden_layers` of `hidden_units` each, or any sizes as `hidden_dims`.

    The first layer is an `EmbeddingBag` sum over the review's distinct ids: the same
    result as multiplying the (B, vocab) multi-hot matrix by the weights, without
    building it. Small vocabularies (<= DENSE_MAX_VOCAB) build it: faster there.
    `weighting="count"` sums repeated words instead (a bag of counts).
    `weighting="nb"` scales each present id by its naive-Bayes log-count ratio, fitted
    on the training reviews (NBSVM, Wang & Manning 2012): a fixed input scaling that
    tells the first layer at once which n-grams separate the classes.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_units: int = 16,
        hidden_layers: int = 2,
        hidden_dims: list[int] | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        weighting: str = "binary",
    ) -> None:
        super().__init__()
        check_choice("model.net.activation", activation, _ACTIVATIONS)
        check_choice("model.net.weighting", weighting, WEIGHTINGS)
        hidden_dims_given = bool(hidden_dims)
        hidden_dims = list(hidden_dims or [hidden_units] * hidden_layers)  # dims win when given
        if not hidden_dims:
            raise SettingError(
                "the MLP needs at least one hidden layer: set model.net.hidden_dims, e.g. [64]"
            )
        for size in hidden_dims:  # hidden_units, or each of hidden_dims
            check_count("model.net.hidden_dims" if hidden_dims_given else "model.net.hidden_units", size)
        check_share("model.net.dropout", dropout)
        self.weighting = weighting
        # A multi-hot needs each review's distinct ids only; counts need the repeats.
        self.reads_sets = weighting != "count"
        # Saved with the weights, so a checkpoint predicts without the training data.
        self.register_buffer("feature_weight", torch.ones(vocab_size) if weighting == "nb" else None)
        self.first = nn.EmbeddingBag(vocab_size, hidden_dims[0], mode="sum", padding_idx=0)
        self.first_bias = nn.Parameter(torch.zeros(hidden_dims[0]))
        # Same scale as nn.Linear(vocab_size, hidden): the multi-hot layer it stands for.
        bound = vocab_size**-0.5
        nn.init.uniform_(self.first.weight, -bound, bound)
        nn.init.uniform_(self.first_bias, -bound, bound)
        with torch.no_grad():
            self.first.weight[0].zero_()
        layers: list[nn.Module] = [_ACTIVATIONS[activation](), nn.Dropout(dropout)]
        for n_in, n_out in zip(hidden_dims[:-1], hidden_dims[1:], strict=False):
            layers += [nn.Linear(n_in, n_out), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
        self.rest = nn.Sequential(*layers, nn.Linear(hidden_dims[-1], 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64 with 0 = padding -> logits (B,)."""
        if self.first.num_embeddings <= (DENSE_MAX_VOCAB_CUDA if tokens.is_cuda else DENSE_MAX_VOCAB):
            hidden = self._dense_input(tokens) @ self.first.weight  # (B, V) @ (V, H0)
        elif tokens.is_cuda:  # flat_ids' boolean masks would wait for the GPU every step
            if self.weighting != "count":
                tokens = dedupe_rows(tokens)
            weights = None if self.feature_weight is None else self.feature_weight[tokens]  # (B, T)
            hidden = self.first(tokens, per_sample_weights=weights)  # (B, H0)
        else:
            ids, counts = flat_ids(tokens, self.first.num_embeddings, self.weighting != "count")
            weights = None if self.feature_weight is None else self.feature_weight[ids]  # (N,)
            hidden = _BagSum.apply(ids, counts, weights, self.first.weight)  # (B, H0)
        return self.rest(hidden + self.first_bias).squeeze(-1)

    def _dense_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> the (B, vocab) multi-hot (or counts, or naive-Bayes weights)."""
        dense = tokens.new_zeros(tokens.shape[0], self.first.num_embeddings, dtype=self.first.weight.dtype)
        if self.weighting == "count":
            dense.scatter_add_(1, tokens, torch.ones_like(tokens, dtype=dense.dtype))
        elif self.feature_weight is None:
            dense.scatter_(1, tokens, 1.0)  # repeats write the same 1: a multi-hot
        else:
            dense.scatter_(1, tokens, self.feature_weight.to(dense.dtype)[tokens])
        dense[:, 0] = 0.0  # padding
        return dense

    def fit_to_data(self, dataset, cache_dir=None, device=None, alpha: float = 1.0) -> None:
        """Naive-Bayes weights from the training reviews (`weighting="nb"` only), counted
        afresh each run (`cache_dir` and `device` unused: two bincounts on the CPU).

        r = log((p / |p|) / (q / |q|)), with p and q the add-alpha counts of reviews
        containing each id among positive and negative reviews.
        """
        if self.feature_weight is None:
            return
        reviews, ids = dataset.presence()
        positive = dataset.labels[dataset.indices][reviews] == 1
        size = len(self.feature_weight)
        p = alpha + np.bincount(ids[positive], minlength=size)[:size]
        q = alpha + np.bincount(ids[~positive], minlength=size)[:size]
        ratio = np.log(p / p.sum()) - np.log(q / q.sum())
        self.feature_weight.copy_(torch.from_numpy(ratio))
