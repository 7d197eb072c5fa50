"""`LSTMClassifier`: embedding -> (bi)LSTM -> pooling -> optional dense -> one logit."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_sentiment.models.auxiliary import NextWordHead, read_segments
from lightning_sentiment.models.dropout import Dropout
from lightning_sentiment.models.lstm_setup import check_lstm_settings, dense_head, init_weights, word2vec_init
from lightning_sentiment.models.pooling import Pooling
from lightning_sentiment.models.pretrain import lm_pretrain
from lightning_sentiment.models.reading import LayerReading
from lightning_sentiment.models.sequences import left_align, reverse_within, split_segments


class LSTMClassifier(LayerReading, nn.Module):
    """A padding-invariant (bi)LSTM: the same review gives the same logit however padded.

    Padded steps are never read before real ones (the backward direction runs on
    each sequence reversed within its length), and pooling masks them, so no
    `pack_padded_sequence` is needed (it makes CPU training several times slower).
    Each option is described in the README (Models); in short:
    `chunk`: reviews read as independent segments of that many tokens, pooled over the
    whole review (Johnson & Zhang 2016). `shifted_eval`: evaluation also reads with every
    boundary moved by half a segment and averages. `random_offsets`: training moves the
    boundaries at random each batch. `word_dropout`: that share of tokens has its whole
    embedding zeroed in training. `recurrent_dropout` (Keras', a step at a time,
    `recurrent.py`) and `weight_dropout` (AWD-LSTM's, fused kernel kept).
    `parallel_directions`: a CPU bidirectional layer's two directions on two threads.
    `length_groups`: on a CPU, the layers read rows in groups of similar length, each
    group only as many steps as its longest row and pooled on its own: padding left
    uncomputed, the same states.
    `reversed_reading`: one direction also reads reviews backwards (a learned hint on
    each step), evaluation averages both. `next_word`: a next-token loss on that share
    of training steps, held in `aux_loss` for the module to add (`auxiliary.py`).
    `lm_pretrain`: that many epochs of a next-word model of the training reviews start
    the embedding and layers (`pretrain.py`, Dai & Le 2015). `segment_loss`: each
    training segment also goes through the head, held in `segment_logits` (S,) with each
    segment's review (S,), for the module to score against the review's label (Lipton et
    al. 2016). `review_lstm`: an LSTM of that many units reads each review's segment
    features in order beside the pooling (Tang et al. 2015).
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
        length_groups: bool = False,
        reversed_reading: bool = False,
        next_word: float = 0.0,
        next_word_weight: float = 0.1,
        segment_loss: float = 0.0,
        review_lstm: int = 0,
        lm_pretrain: int = 0,
    ) -> None:
        super().__init__()
        check_lstm_settings({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.bidirectional, self.keras_bias = bidirectional, keras_bias
        self.chunk, self.word_dropout, self.shifted_eval = chunk, word_dropout, shifted_eval
        self.random_offsets, self.embed_init, self.lm_pretrain = random_offsets, embed_init, lm_pretrain
        self.recurrent_dropout, self.weight_dropout = recurrent_dropout, weight_dropout
        self.parallel_directions, self.length_groups = parallel_directions, length_groups
        self.next_word, self.next_word_weight = next_word, next_word_weight
        self.aux_loss: torch.Tensor | None = None  # the last training forward's next-word term
        self.segment_loss = segment_loss
        # the last training forward's segment logits (S,) and their reviews (S,)
        self.segment_logits: tuple[torch.Tensor, torch.Tensor] | None = None
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        # added to each input step of a backward reading; zero at first: no hint yet
        self.backward_hint = nn.Parameter(torch.zeros(embed_dim)) if reversed_reading else None
        self._build_layers(embed_dim, hidden_dim, num_layers, keras_bias)
        self.dropout = Dropout(dropout)  # on the embeddings and between LSTM layers
        self.output_dropout = Dropout(dropout if output_dropout is None else output_dropout)
        self.pool = Pooling(pooling, hidden_dim, 2 if bidirectional else 1)
        # reads each review's segment features (S -> (B, n, F)) in order
        self.review_lstm = nn.LSTM(self.pool.size, review_lstm, batch_first=True) if review_lstm else None
        self.head = dense_head(self.pool.size + review_lstm, dense_dim, self.output_dropout)
        self.next_word_head = NextWordHead(hidden_dim, vocab_size) if next_word else None
        layers = [*self.forward_layers, *self.backward_layers]
        init_weights(self.embedding, layers, self.head, init, keras_bias, embed_init_range)

    def _build_layers(self, embed_dim: int, hidden_dim: int, num_layers: int, keras_bias: bool) -> None:
        """One `nn.LSTM` per layer and direction: the backward ones read each sequence
        reversed within its length, so padding never comes before real steps.
        keras_bias: one bias per gate as in Keras (torch has two), so parameter counts
        match Keras: a constant-1 input feature whose weights serve as that bias."""
        sizes = [embed_dim] + [hidden_dim * (2 if self.bidirectional else 1)] * (num_layers - 1)
        extra = 1 if keras_bias else 0

        def lstm(size: int) -> nn.LSTM:
            return nn.LSTM(size + extra, hidden_dim, batch_first=True, bias=not keras_bias)

        self.forward_layers = nn.ModuleList(lstm(s) for s in sizes)
        self.backward_layers = nn.ModuleList(lstm(s) for s in (sizes if self.bidirectional else []))

    def fit_to_data(self, dataset, cache_dir: Path | None = None, device=None) -> None:
        """Start from statistics of the training reviews in `dataset`: word2vec vectors
        (`embed_init="word2vec"`, `lstm_setup.word2vec_init`), then a language model of
        them (`lm_pretrain` epochs, `pretrain.py`); otherwise nothing to fit."""
        if self.embed_init == "word2vec":
            word2vec_init(self.embedding, dataset, cache_dir)
        if self.lm_pretrain:
            lm_pretrain(self, dataset, self.lm_pretrain, cache_dir, device)

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
        batch, slots, n = tokens.shape[0], None, 0
        if self.chunk is not None:  # rows become segments: (S, chunk)
            tokens, lengths, slots, n, backward = self._segments(tokens, lengths, first, backward)
        h = self._embed(tokens, backward)  # dropout drawn in the rows' order, grouped or not
        order, groups = self._grouping(h, lengths)
        if order is not None:  # longest first, each group read and pooled apart; all below follows
            lengths, slots = lengths[order], None if slots is None else slots[order]
            parts = self._grouped_parts(h, lengths, order, groups)  # a kind's (B, ...) or (S, ...)
        else:
            directions = self._layers(h, lengths)
            if self.training and self.next_word_head is not None:
                loss = self.next_word_head.sampled_loss(
                    directions[0], tokens, lengths, self.next_word, self.dropout
                )
                self.aux_loss = self.next_word_weight * loss
            # The last layer's directions pool apart: pooling reads either direction's
            # states in any order, so the backward states are never turned around.
            parts = self.pool(directions, lengths)  # a kind's (B, ...), or (S, ...) a segment
        if self.training and self.segment_loss:  # chunk is set: checked at init
            self.segment_logits = (self._logits(self.pool.features(parts)), slots // n)  # (S,), (S,)
        if self.chunk is None:
            features = self.pool.features(parts)  # (B, F)
            return features if order is None else torch.empty_like(features).index_copy(0, order, features)
        merged = self.pool.merge(parts, lengths, slots, batch, n)  # (B, F)
        if self.review_lstm is None:
            return merged
        segments = self.output_dropout(self.pool.features(parts))  # (S, F)
        return torch.cat(
            [merged, read_segments(self.review_lstm, segments, slots, batch, n)], dim=1
        )  # (B, F + R)

    def _segments(
        self, tokens: torch.Tensor, lengths: torch.Tensor, first: int | None, backward: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor | None]:
        """Reviews (B, T) -> `split_segments`' (segments (S, chunk), lengths, slots, n), and
        each segment's `backward` flag (S,); in training with `random_offsets`, the first
        segment's size drawn for the batch."""
        if first is None and self.training and self.random_offsets:
            # one draw a batch, from the seeded CPU generator (no device sync)
            first = int(torch.randint(1, self.chunk + 1, ()))
        tokens, lengths, slots, n = split_segments(tokens, lengths, self.chunk, first)
        if backward is not None:
            backward = backward[slots // n]  # (S,): each segment its review's way
        return tokens, lengths, slots, n, backward

    def _embed(self, tokens: torch.Tensor, backward: torch.Tensor | None) -> torch.Tensor:
        """Token ids (B, T) -> the first layer's input (B, T, E), with word dropout, the
        backward hint and dropout."""
        h = self.embedding(tokens)  # (B, T, E); (S, chunk, E) in segments
        if self.training and self.word_dropout > 0:
            keep = torch.rand(h.shape[:2], device=h.device) >= self.word_dropout  # (B, T)
            h = h * (keep[:, :, None] / (1.0 - self.word_dropout)).to(h.dtype)
        if backward is not None:  # after word dropout, so every step of a row says its way
            h = h + backward[:, None, None].to(h.dtype) * self.backward_hint  # (B, T, E)
        return self.dropout(h)
