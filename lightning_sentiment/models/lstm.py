"""`LSTMClassifier`: embedding -> (bi)LSTM -> pooling -> optional dense -> one logit."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_sentiment.errors import SettingError, check_choice, check_count, check_share
from lightning_sentiment.models.directions import both_directions
from lightning_sentiment.models.pooling import POOLINGS, Pooling, on_grid
from lightning_sentiment.models.recurrent import train_lstm
from lightning_sentiment.models.sequences import left_align, reverse_within, split_segments
from lightning_sentiment.models.word2vec import word2vec_vectors


class LSTMClassifier(nn.Module):
    """A padding-invariant (bi)LSTM: the same review gives the same logit however padded.

    Padded steps are never read before real ones (the backward direction runs on
    each sequence reversed within its length), and pooling masks them, so no
    `pack_padded_sequence` is needed (it makes CPU training several times slower).

    `chunk`: the LSTM reads each review as independent segments of that many tokens
    (state reset at each), pooled over the whole review (Johnson & Zhang 2016 train
    so); chosen for accuracy: it costs ~10% on CPU (each review's last segment is
    padded) and, cuDNN's host work bounding a GPU step, saves no GPU time (README).
    `shifted_eval`: with `chunk`, evaluation (validation, test, prediction) reads each
    review twice, the second time with every segment boundary moved by half a segment,
    and averages the two logits. Chosen on validation (README).
    `random_offsets`: with `chunk`, each training batch moves every segment boundary by
    a random amount (a first segment of 1 to `chunk` tokens), so a review is cut
    differently every epoch. Evaluation is unchanged. Chosen on validation (README).
    `word_dropout`: in training, that share of the tokens has its whole embedding
    zeroed (and the rest scaled up), so the model cannot lean on single words.
    `recurrent_dropout`: Keras' (one mask a sequence on the state entering the recurrent
    matrix). Training then runs the LSTM a step at a time (`recurrent.py`): slower.
    `weight_dropout`: AWD-LSTM's weight drop, that share of each recurrent matrix's
    entries dropped, a fresh draw each training batch; the fused kernel still runs.
    `parallel_directions`: on a CPU, a bidirectional layer runs its two directions on
    two threads at once (`directions.py`); for small LSTMs, whose kernel a second core
    does not speed up. Same results.
    `reversed_reading`: a one-direction LSTM also reads reviews last word first. In
    training each review is read backwards with probability 1/2, a learned vector added
    to every input step saying which way; evaluation averages the logits of both
    readings (four with `shifted_eval`). One set of weights, one direction at a time:
    no state sees both sides of a word, as a bidirectional layer's does.
    `next_word`: in training, the last layer's forward states also predict the next
    token of their row (an adaptive softmax) at a random `next_word` share of the steps,
    and `aux_loss` holds that loss times `next_word_weight` for the module to add: a
    language model of the training reviews themselves (no other text) as a regularizer.
    `segment_loss`: with `chunk`, in training each segment's own pooled features also go
    through the head, and `segment_logits` holds those logits (S,) with each segment's
    review (S,), for the module to add `segment_loss` times their loss against the
    review's label: every segment read as a short review of its own (target replication,
    Lipton et al. 2016), so each one gets a gradient, not only those max pooling picks.
    `review_lstm`: with `chunk`, a second LSTM of that many units reads each review's
    segment features in order, and its state after the last segment joins the pooled
    features before the head: a hierarchical reading (Tang et al. 2015, Yang et al.
    2016) that keeps where in the review each segment sat, which pooling over all
    segments forgets. 0: off.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 128,
        hidden_dim: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        output_dropout: float | None = None,
        pooling: str = "last",
        dense_dim: int | None = None,
        keras_bias: bool = False,
        init: str = "torch",
        embed_init_range: float | None = None,
        embed_init: str | None = None,
        chunk: int | None = None,
        word_dropout: float = 0.0,
        shifted_eval: bool = False,
        random_offsets: bool = False,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        parallel_directions: bool = False,
        reversed_reading: bool = False,
        next_word: float = 0.0,
        next_word_weight: float = 0.1,
        segment_loss: float = 0.0,
        review_lstm: int = 0,
    ) -> None:
        super().__init__()
        check_choice("model.net.pooling", pooling, POOLINGS)
        check_choice("model.net.init", init, ("torch", "keras"))
        check_choice("model.net.embed_init", embed_init or "null", ("null", "word2vec"))  # null: random
        if reversed_reading and bidirectional:
            raise SettingError(
                "model.net.reversed_reading=true is for a one-direction LSTM: a bidirectional "
                "one reads both ways already; set one of them false"
            )
        if chunk is not None and (chunk < 1 or pooling == "last"):
            raise SettingError(f"model.net.chunk={chunk} needs a pooling other than last and a size >= 1")
        for name, size in (("embed_dim", embed_dim), ("hidden_dim", hidden_dim), ("num_layers", num_layers)):
            check_count(f"model.net.{name}", size)
        if dense_dim is not None:
            check_count("model.net.dense_dim", dense_dim)
        shares = {
            "dropout": dropout,
            "output_dropout": 0.0 if output_dropout is None else output_dropout,
            "word_dropout": word_dropout,
            "recurrent_dropout": recurrent_dropout,
            "weight_dropout": weight_dropout,
        }
        for name, share in shares.items():
            check_share(f"model.net.{name}", share)
        if segment_loss < 0:
            raise SettingError(f"model.net.segment_loss={segment_loss} must be >= 0 (a loss weight, 0 off)")
        if segment_loss and chunk is None:
            raise SettingError(f"model.net.segment_loss={segment_loss} needs segments: set model.net.chunk")
        if review_lstm < 0:
            raise SettingError(f"model.net.review_lstm={review_lstm} must be >= 0 (units, 0 off)")
        if review_lstm and chunk is None:
            raise SettingError(f"model.net.review_lstm={review_lstm} needs segments: set model.net.chunk")
        if review_lstm and segment_loss:
            raise SettingError(
                "model.net.review_lstm reads whole reviews, segment_loss single segments: set one to 0"
            )
        if not 0.0 <= next_word <= 1.0:
            raise SettingError(f"model.net.next_word={next_word} must lie in [0, 1] (a share of steps)")
        self.bidirectional, self.keras_bias = bidirectional, keras_bias
        self.chunk, self.word_dropout, self.shifted_eval = chunk, word_dropout, shifted_eval
        self.random_offsets = random_offsets
        self.embed_init = embed_init
        self.recurrent_dropout, self.weight_dropout = recurrent_dropout, weight_dropout
        self.parallel_directions = parallel_directions
        self.next_word, self.next_word_weight = next_word, next_word_weight
        self.aux_loss: torch.Tensor | None = None  # the last training forward's next-word term
        self.segment_loss = segment_loss
        # the last training forward's segment logits (S,) and their reviews (S,)
        self.segment_logits: tuple[torch.Tensor, torch.Tensor] | None = None
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        # added to each input step of a backward reading; zero at first: no hint yet
        self.backward_hint = nn.Parameter(torch.zeros(embed_dim)) if reversed_reading else None
        sizes = [embed_dim] + [hidden_dim * (2 if bidirectional else 1)] * (num_layers - 1)
        # keras_bias: one bias per gate as in Keras (torch has two), so parameter counts
        # match Keras: a constant-1 input feature whose weights serve as that bias.
        extra = 1 if keras_bias else 0

        def lstm(size: int) -> nn.LSTM:
            return nn.LSTM(size + extra, hidden_dim, batch_first=True, bias=not keras_bias)

        self.forward_layers = nn.ModuleList(lstm(s) for s in sizes)
        self.backward_layers = nn.ModuleList(lstm(s) for s in (sizes if bidirectional else []))
        self.dropout = nn.Dropout(dropout)  # on the embeddings and between LSTM layers
        self.output_dropout = nn.Dropout(dropout if output_dropout is None else output_dropout)
        self.pool = Pooling(pooling, hidden_dim, 2 if bidirectional else 1)
        features = self.pool.size
        # reads each review's segment features (S -> (B, n, F)) in order
        self.review_lstm = nn.LSTM(features, review_lstm, batch_first=True) if review_lstm else None
        features += review_lstm
        head: list[nn.Module] = []
        if dense_dim:
            head += [nn.Linear(features, dense_dim), nn.ReLU(), self.output_dropout]
            features = dense_dim
        self.head = nn.Sequential(*head, nn.Linear(features, 1))
        self.next_word_head = None
        if next_word:  # frequent words in the head; rarer ones in clusters of smaller projections
            cutoffs = [c for c in (2000, 10000) if c < vocab_size - 1] or [max(1, vocab_size // 2)]
            self.next_word_head = nn.AdaptiveLogSoftmaxWithLoss(hidden_dim, vocab_size, cutoffs, div_value=4)
        if init == "keras":
            self._keras_init(hidden_dim, extra)
        if embed_init_range is not None:
            nn.init.uniform_(self.embedding.weight, -embed_init_range, embed_init_range)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def fit_to_data(self, dataset, cache_dir: Path | None = None) -> None:
        """`embed_init="word2vec"`: the embedding starts from word2vec vectors of the training
        reviews, rescaled to the spread of the random init they replace (its std, 1 for
        torch's), so only their directions come from the text. Ids word2vec never saw
        keep their random rows; padding stays zero."""
        if self.embed_init != "word2vec":
            return
        weight = self.embedding.weight  # (V, E)
        seed = torch.initial_seed() % 2**32  # the run's seed (seed_everything)
        vectors, seen = word2vec_vectors(dataset, weight.shape[0], weight.shape[1], seed, cache_dir)
        seen[0] = False
        if not seen.any():
            return
        scale = float(weight[1:].detach().std()) / float(vectors[seen].std())
        with torch.no_grad():
            weight[torch.from_numpy(seen)] = torch.from_numpy(vectors[seen] * scale).to(weight)

    def _keras_init(self, hidden: int, extra: int) -> None:
        """Keras defaults: Glorot-uniform kernels, orthogonal recurrent weights, zero biases
        with forget-gate bias 1, embedding uniform(-0.05, 0.05)."""
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        for layer in [*self.forward_layers, *self.backward_layers]:
            w_ih = layer.weight_ih_l0  # (4H, in + extra); the extra column is the bias
            nn.init.xavier_uniform_(w_ih[:, : w_ih.shape[1] - extra])
            for gate in range(4):  # Keras initialises each gate's recurrent matrix orthogonal
                nn.init.orthogonal_(layer.weight_hh_l0[gate * hidden : (gate + 1) * hidden])
            biases = [w_ih[:, -1]] if extra else [layer.bias_ih_l0, layer.bias_hh_l0]
            with torch.no_grad():
                for b in biases:
                    b.zero_()
                biases[0][hidden : 2 * hidden] = 1.0  # torch gate order: input, forget, cell, output
        for module in self.head:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64 with 0 = padding -> logits (B,)."""
        self.aux_loss = self.segment_logits = None
        tokens, lengths = left_align(tokens)
        lengths = lengths.clamp(min=1)  # an empty review reads one padding step
        if self.backward_hint is None:
            return self._readings(tokens, lengths, None)
        backward = torch.ones_like(lengths, dtype=torch.bool)  # (B,)
        if self.training:  # half the reviews, at random, read backwards
            # from the CPU generator, which adversarial training replays for its second run
            backward = (torch.rand(lengths.shape) < 0.5).to(lengths.device, non_blocking=True)
            return self._readings(self._reverse_rows(tokens, lengths, backward), lengths, backward)
        reversed_tokens = self._reverse_rows(tokens, lengths, backward)
        both = self._readings(tokens, lengths, ~backward) + self._readings(reversed_tokens, lengths, backward)
        return both / 2

    @staticmethod
    def _reverse_rows(tokens: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Left-aligned tokens (B, T) with the rows marked in `rows` (B,) reversed within
        their lengths (padding stays at the end)."""
        flipped = reverse_within(tokens[:, :, None], lengths)[:, :, 0]  # (B, T)
        return torch.where(rows[:, None], flipped, tokens)

    def _readings(
        self, tokens: torch.Tensor, lengths: torch.Tensor, backward: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits (B,) of one reading; in evaluation with `shifted_eval`, the average of two
        (segment boundaries moved by half a segment)."""
        logits = self._logits(self._features(tokens, lengths, backward=backward))
        if self.shifted_eval and self.chunk is not None and not self.training:
            shifted = self._features(tokens, lengths, first=self.chunk // 2, backward=backward)
            logits = (logits + self._logits(shifted)) / 2
        return logits

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.output_dropout(features)).squeeze(-1)  # (B, F) -> (B,)

    def _features(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        first: int | None = None,
        backward: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Left-aligned tokens (B, T) -> pooled features (B, F); in segments with `chunk`,
        the first of `first` tokens. `backward` (B,) bool: the rows read backwards, whose
        steps get `backward_hint`."""
        batch = tokens.shape[0]
        if self.chunk is not None:  # rows become segments: (S, chunk)
            if first is None and self.training and self.random_offsets:
                # one draw a batch, from the seeded CPU generator (no device sync)
                first = int(torch.randint(1, self.chunk + 1, ()))
            tokens, lengths, slots, n = split_segments(tokens, lengths, self.chunk, first)
            if backward is not None:
                backward = backward[slots // n]  # (S,): each segment its review's way
        h = self.embedding(tokens)  # (B, T, E); (S, chunk, E) in segments
        if self.training and self.word_dropout > 0:
            keep = torch.rand(h.shape[:2], device=h.device) >= self.word_dropout  # (B, T)
            h = h * (keep[:, :, None] / (1.0 - self.word_dropout)).to(h.dtype)
        if backward is not None:  # after word dropout, so every step of a row says its way
            h = h + backward[:, None, None].to(h.dtype) * self.backward_hint  # (B, T, E)
        h = self.dropout(h)
        ones = h.new_ones(*h.shape[:2], 1) if self.keras_bias else None  # (B, T, 1)
        last = len(self.forward_layers) - 1
        for i, fwd in enumerate(self.forward_layers):
            if ones is not None:
                h = torch.cat([h, ones], dim=-1)
            if self.bidirectional:
                out, back = self._run_both(fwd, self.backward_layers[i], h, reverse_within(h, lengths))
                directions = [out, back]  # back: reversed within each length
            else:
                directions = [self._run(fwd, h)]  # (B, T, H)
            if i < last:  # the next layer reads the directions in step order: (B, T, H or 2H)
                if self.bidirectional:
                    directions = [directions[0], reverse_within(directions[1], lengths)]
                    h = self.dropout(torch.cat(directions, dim=-1))
                else:
                    h = self.dropout(directions[0])
        if self.training and self.next_word_head is not None:
            self.aux_loss = self.next_word_weight * self._next_word_loss(directions[0], tokens, lengths)
        # The last layer's directions pool apart: pooling reads either direction's
        # states in any order, so the backward states are never turned around.
        parts = self.pool(directions, lengths)  # a kind's (B, ...), or (S, ...) a segment
        if self.training and self.segment_loss:  # chunk is set: checked at init
            self.segment_logits = (self._logits(self.pool.features(parts)), slots // n)  # (S,), (S,)
        if self.chunk is None:
            return self.pool.features(parts)  # (B, F)
        merged = self.pool.merge(parts, lengths, slots, batch, n)  # (B, F)
        if self.review_lstm is None:
            return merged
        return torch.cat([merged, self._read_segments(parts, slots, batch, n)], dim=1)  # (B, F + R)

    def _read_segments(
        self, parts: list[torch.Tensor], slots: torch.Tensor, batch: int, n: int
    ) -> torch.Tensor:
        """The review LSTM's state (B, R) after each review's last segment. Its segments'
        features (S, F) fill the first slots of its row (reviews are left-aligned), so
        the empty slots after them never reach that state."""
        segments = self.output_dropout(self.pool.features(parts))  # (S, F)
        grid = on_grid(segments, slots, batch * n, 0.0).view(batch, n, -1)  # (B, n, F)
        counts = torch.bincount(slots // n, minlength=batch)  # (B,): >= 1, an empty review reads one step
        states = self.review_lstm(grid)[0]  # (B, n, R)
        return states[torch.arange(batch, device=grid.device), counts - 1]  # (B, R)

    def _next_word_loss(self, states: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor):
        """Mean next-token loss of forward states (N, T, H) at a random `next_word` share of
        the steps that have a next token in their row (N, T) of `lengths` (N,)."""
        steps = torch.arange(tokens.shape[1] - 1, device=tokens.device)
        pick = steps < (lengths[:, None] - 1)  # (N, T - 1): a next token exists
        pick &= torch.rand(pick.shape, device=pick.device) < self.next_word
        # the true next ids: word dropout zeroed embeddings, not the ids
        inputs, targets = self.dropout(states[:, :-1][pick]), tokens[:, 1:][pick]  # (P, H), (P,)
        if targets.numel() == 0:  # nothing drawn: a zero that keeps the head in the graph
            return states.sum() * 0.0
        return self.next_word_head(inputs.float(), targets).loss

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
