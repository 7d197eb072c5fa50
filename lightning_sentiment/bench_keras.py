"""The Keras side of the speed comparison: the tutorials' models, timed on this machine.

The speed targets compare each `experiment=keras_*` with Keras epoch times measured
once on another machine; CPUs differ (an AVX2-only EPYC ran `keras_bilstm_200` 1.3-2.4x
slower than the machine of earlier sessions), so this script times the tutorials'
own models on the machine at hand, to run beside `python -m lightning_sentiment.bench`.
TensorFlow is not a dependency of this project: run it from the repository root in a
virtual environment of its own:

    python -m venv .tfenv && .tfenv/bin/pip install tensorflow-cpu==2.21.0 tqdm
    .tfenv/bin/python -m lightning_sentiment.bench_keras --models keras_bilstm_200,keras_mlp

Data: the same reviews and Keras-style tokens as training (`lightning_sentiment.data`
is numpy-only), ids by frequency (Keras' `num_words`), every review padded and cut
to the tutorial's `maxlen` as the tutorials do. Model, batch size and optimizer are
each tutorial's (the `conf/experiment/` comments). Each repetition is one epoch over
`--batches` batches (with `--validate`, and a validation pass over as many reviews per
training review as the tutorial's `validation_data`); the first epoch (graph tracing)
is not timed. Prints one JSON object: seconds per epoch of the tutorial's training set
and per 25,000 training reviews.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from lightning_sentiment.data.corpus import build_corpus
from lightning_sentiment.data.text import Tokenizer, pad_sequences

# name: vocabulary (Keras num_words, padding included), OOV token, maxlen, padding,
# truncating, batch size, training reviews of the tutorial, and the reviews it validates
# on after every epoch (`validation_data`: the LSTM tutorials pass the 25k test reviews)
TUTORIALS = {
    "keras_lstm_80": dict(
        vocab=20_000, oov=False, maxlen=80, pad="pre", cut="pre", batch=32, train=25_000, val=25_000
    ),
    "keras_lstm_500": dict(
        vocab=10_000, oov=False, maxlen=500, pad="pre", cut="pre", batch=64, train=25_000, val=25_000
    ),
    "keras_bilstm_200": dict(
        vocab=10_000, oov=True, maxlen=200, pad="post", cut="post", batch=32, train=37_500, val=12_500
    ),
    "keras_mlp": dict(
        vocab=10_000, oov=False, maxlen=None, pad="post", cut="post", batch=512, train=15_000, val=10_000
    ),
}


def encode(token_ids: np.ndarray, offsets: np.ndarray, vocab: int, oov: bool) -> list[np.ndarray]:
    """Each review's ids by word frequency, as Keras' `Tokenizer(num_words, oov_token)`:
    1 is OOV when there is one, rarer words are OOV or dropped."""
    counts = np.bincount(token_ids)
    rank = np.empty_like(counts)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    first = 2 if oov else 1
    ids = rank + first  # (n_words,)
    unknown = ids >= vocab
    ids[unknown] = 1 if oov else -1
    mapped = ids[token_ids]
    reviews = np.split(mapped, offsets[1:-1])
    return reviews if oov else [r[r >= 0] for r in reviews]


def inputs(reviews: list[np.ndarray], spec: dict) -> np.ndarray:
    """(N, maxlen) int ids, or the (N, vocab) multi-hot of the MLP tutorial."""
    if spec["maxlen"] is not None:
        return pad_sequences(reviews, maxlen=spec["maxlen"], padding=spec["pad"], truncating=spec["cut"])
    hot = np.zeros((len(reviews), spec["vocab"]), dtype=np.float32)
    for row, ids in zip(hot, reviews, strict=True):
        row[ids] = 1.0
    return hot


def build(name: str, keras):
    """The tutorial's model, compiled as it compiles it."""
    layers = keras.layers
    if name == "keras_lstm_80":
        net = [
            layers.Embedding(
                20_000, 32, embeddings_initializer=keras.initializers.RandomUniform(-0.01, 0.01)
            ),  # noqa: E501
            layers.LSTM(100, dropout=0.2, recurrent_dropout=0.2),
        ]
    elif name == "keras_lstm_500":
        net = [layers.Embedding(10_000, 32), layers.LSTM(100)]
    elif name == "keras_bilstm_200":
        net = [layers.Embedding(10_000, 16), layers.Bidirectional(layers.LSTM(32)), layers.Dense(10, "relu")]
    else:
        net = [layers.Dense(16, "relu"), layers.Dense(16, "relu")]
    model = keras.Sequential([*net, layers.Dense(1, "sigmoid")])
    optimizer = "rmsprop" if name == "keras_mlp" else "adam"
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    return model


def sizes(spec: dict, batches: int, validate: bool) -> tuple[int, int]:
    """(training reviews, validation reviews) of one timed epoch: at most the tutorial's
    epoch, and with `validate` as many validation reviews per training review as it has
    (so the scaled figure is its whole epoch)."""
    n = min(batches * spec["batch"], spec["train"])
    return n, round(n * spec["val"] / spec["train"]) if validate else 0


def bench(name: str, x: np.ndarray, y: np.ndarray, batches: int, repeats: int, validate: bool, keras) -> dict:
    """Seconds an epoch of `x` and `y`: the training reviews, then the validation ones."""
    spec = TUTORIALS[name]
    n, n_val = sizes(spec, batches, validate)
    validation = (x[n : n + n_val], y[n : n + n_val]) if validate else None
    model = build(name, keras)
    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(
        x[:n],
        y[:n],
        batch_size=spec["batch"],
        epochs=1 + repeats,
        verbose=0,
        callbacks=[EpochTimer()],
        validation_data=validation,
    )
    seconds = statistics.median(times[1:])  # the first epoch traces the graph
    return {
        "tutorial_epoch_s": round(seconds * spec["train"] / n, 2),
        "epoch_s": round(seconds * 25_000 / n, 2),  # per 25,000 reviews, as the PyTorch benchmark
        "train_reviews": spec["train"],
        "measured_batches": -(-n // spec["batch"]),
        "validated_reviews": n_val,
        "parameters": model.count_params(),
        "jit_compile": bool(model.jit_compile),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default=os.environ.get("IMDB_ARCHIVE"), help="IMDB .tar.gz")
    parser.add_argument("--models", default=",".join(TUTORIALS), help="tutorials, comma-separated")
    parser.add_argument("--batches", type=int, default=150, help="batches an epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs after the first")
    parser.add_argument(
        "--validate", action="store_true", help="time epochs with the tutorial's validation pass"
    )
    args = parser.parse_args(argv)
    if not args.archive:
        parser.error("pass --archive PATH or set IMDB_ARCHIVE")
    unknown = sorted(set(args.models.split(",")) - set(TUTORIALS))
    if unknown:
        parser.error(f"unknown tutorial {', '.join(unknown)}: use {', '.join(TUTORIALS)}")
    keras, tf = _import_keras(parser)
    corpus = build_corpus(Path(args.archive), Tokenizer())
    rng = np.random.default_rng(0)
    order = rng.permutation(len(corpus.labels))  # shuffled once, as the tutorials' data
    result: dict = {
        "machine": {"cpu_cores": os.cpu_count(), "platform": platform.platform(), "cpu": _cpu_name()},
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "models": {},
    }
    for name in args.models.split(","):
        spec = TUTORIALS[name]
        reviews = encode(corpus.token_ids, corpus.offsets, spec["vocab"], spec["oov"])
        picked = order[: sum(sizes(spec, args.batches, args.validate))]
        x = inputs([reviews[i] for i in picked], spec)
        y = corpus.labels[picked].astype(np.float32)
        keras.utils.set_random_seed(0)
        result["models"][name] = bench(name, x, y, args.batches, args.repeats, args.validate, keras)
    print(json.dumps(result, indent=2))
    return result


def _import_keras(parser: argparse.ArgumentParser):
    """(keras, tensorflow), or a one-line error that says how to install them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras  # noqa: PLC0415 - heavy, and only this script needs it
        import tensorflow as tf  # noqa: PLC0415
    except ImportError as err:
        parser.error(
            f"{err.name} is missing: TensorFlow is not a dependency; run this from a venv of its own: "
            "python -m venv .tfenv && .tfenv/bin/pip install tensorflow-cpu==2.21.0 tqdm, then "
            ".tfenv/bin/python -m lightning_sentiment.bench_keras (README, Development)"
        )
    return keras, tf


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
