"""`LSTMClassifier`'s settings check, its head and its non-default initialisations."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_sentiment.errors import SettingError, check_choice, check_count, check_share
from lightning_sentiment.models.pooling import POOLINGS
from lightning_sentiment.models.word2vec import word2vec_vectors


def check_lstm_settings(settings: dict) -> None:
    """Fail at construction, naming the `model.net` key and what it accepts.
    `settings`: `LSTMClassifier`'s arguments by name."""
    pooling, chunk = settings["pooling"], settings["chunk"]
    check_choice("model.net.pooling", pooling, POOLINGS)
    check_choice("model.net.init", settings["init"], ("torch", "keras"))
    embed_init = settings["embed_init"] or "null"  # null: random
    check_choice("model.net.embed_init", embed_init, ("null", "word2vec"))
    if settings["reversed_reading"] and settings["bidirectional"]:
        raise SettingError(
            "model.net.reversed_reading=true is for a one-direction LSTM: a bidirectional "
            "one reads both ways already; set one of them false"
        )
    if chunk is not None and (chunk < 1 or pooling == "last"):
        raise SettingError(f"model.net.chunk={chunk} needs a pooling other than last and a size >= 1")
    for name in ("embed_dim", "hidden_dim", "num_layers", "dense_dim"):
        if settings[name] is not None:  # dense_dim: null, none
            check_count(f"model.net.{name}", settings[name])
    for name in ("dropout", "output_dropout", "word_dropout", "recurrent_dropout", "weight_dropout"):
        if settings[name] is not None:  # output_dropout: null, dropout's
            check_share(f"model.net.{name}", settings[name])
    _check_auxiliary_settings(settings)


def _check_auxiliary_settings(settings: dict) -> None:
    """The training terms and readings beside the sentiment loss."""
    chunk = settings["chunk"]
    segment_loss, review_lstm, next_word = (settings[k] for k in ("segment_loss", "review_lstm", "next_word"))
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
    check_count("model.net.lm_pretrain", settings["lm_pretrain"], minimum=0, also=" (epochs; 0: off)")
    if settings["lm_pretrain"] and settings["bidirectional"]:
        raise SettingError(
            "model.net.lm_pretrain trains a forward language model, for a one-direction LSTM: "
            "set model.net.bidirectional=false or model.net.lm_pretrain=0"
        )
    if not 0.0 <= next_word <= 1.0:
        raise SettingError(f"model.net.next_word={next_word} must lie in [0, 1] (a share of steps)")


def dense_head(features: int, dense_dim: int | None, dropout: nn.Dropout) -> nn.Sequential:
    """Pooled features -> [Dense ReLU, dropout] -> one logit."""
    head = []
    if dense_dim:
        head = [nn.Linear(features, dense_dim), nn.ReLU(), dropout]
        features = dense_dim
    return nn.Sequential(*head, nn.Linear(features, 1))


def init_weights(
    embedding: nn.Embedding,
    layers: list[nn.LSTM],
    head: nn.Sequential,
    init: str,
    keras_bias: bool,
    embed_init_range: float | None,
) -> None:
    """Keras' initialisers (`init="keras"`), then a uniform embedding range if given;
    the padding row zero either way."""
    if init == "keras":
        keras_init(embedding, layers, head, keras_bias)
    if embed_init_range is not None:
        nn.init.uniform_(embedding.weight, -embed_init_range, embed_init_range)
    with torch.no_grad():
        embedding.weight[0].zero_()


def keras_init(embedding: nn.Embedding, layers: list[nn.LSTM], head: nn.Sequential, keras_bias: bool) -> None:
    """Keras defaults: Glorot-uniform kernels, orthogonal recurrent weights, zero biases
    with forget-gate bias 1, embedding uniform(-0.05, 0.05). `keras_bias`: each layer's
    last input column is the bias."""
    nn.init.uniform_(embedding.weight, -0.05, 0.05)
    extra = int(keras_bias)
    for layer in layers:
        hidden = layer.hidden_size
        w_ih = layer.weight_ih_l0  # (4H, in + extra); the extra column is the bias
        nn.init.xavier_uniform_(w_ih[:, : w_ih.shape[1] - extra])
        for gate in range(4):  # Keras initialises each gate's recurrent matrix orthogonal
            nn.init.orthogonal_(layer.weight_hh_l0[gate * hidden : (gate + 1) * hidden])
        biases = [w_ih[:, -1]] if extra else [layer.bias_ih_l0, layer.bias_hh_l0]
        with torch.no_grad():
            for b in biases:
                b.zero_()
            biases[0][hidden : 2 * hidden] = 1.0  # torch gate order: input, forget, cell, output
    for module in head:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def word2vec_init(embedding: nn.Embedding, dataset, cache_dir: Path | None = None) -> None:
    """Start the embedding from word2vec vectors of the training reviews in `dataset`,
    rescaled to the spread of the random init they replace (its std, 1 for torch's), so
    only their directions come from the text. Ids word2vec never saw keep their random
    rows; padding stays zero."""
    weight = embedding.weight  # (V, E)
    seed = torch.initial_seed() % 2**32  # the run's seed (seed_everything)
    vectors, seen = word2vec_vectors(dataset, weight.shape[0], weight.shape[1], seed, cache_dir)
    seen[0] = False
    if not seen.any():
        return
    scale = float(weight[1:].detach().std()) / float(vectors[seen].std())
    with torch.no_grad():
        weight[torch.from_numpy(seen)] = torch.from_numpy(vectors[seen] * scale).to(weight)
