"""Classify new reviews with a saved checkpoint.

    sentiment-predict outputs/.../checkpoints/last.ckpt "A wonderful film." "Dull."
    sentiment-predict CKPT --file reviews.txt --json      # one review per line
    cat reviews.txt | sentiment-predict CKPT

From Python: `SentimentPredictor(ckpt).predict(["great movie", "awful"])`.
The checkpoint alone is enough: it carries the vocabulary and preprocessing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lightning_sentiment.checkpointing import DATA_STATE_KEY, load_checkpoint
from lightning_sentiment.data.ngrams import bigram_tokens
from lightning_sentiment.data.text import Tokenizer, Vocabulary, pad_sequences, truncate
from lightning_sentiment.errors import SentimentError, first_line, positive_int


def build_net(cfg: dict) -> torch.nn.Module:
    """The network from its `_target_` config, without Hydra or Lightning (fast start-up)."""
    module, _, name = cfg["_target_"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**{k: v for k, v in cfg.items() if k[0] != "_"})


@dataclass
class Prediction:
    label: str | None  # "positive" | "negative"; None for an empty review
    p_positive: float | None
    tokens: int  # words after tokenization
    known_tokens: int  # of those, words in the vocabulary
    note: str = ""  # "empty review" | "no known words" | ""


class SentimentPredictor:
    """Loads a checkpoint once and classifies lists of strings in batches."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", batch_size: int = 256) -> None:
        ckpt = load_checkpoint(checkpoint)
        data = ckpt[DATA_STATE_KEY]
        self.vocab = Vocabulary.from_state_dict(data["vocab"])
        prep = data["preprocessing"]
        self.tokenizer = Tokenizer(
            prep["lowercase"], prep["filters"], prep["strip_html"], prep.get("split_chars", "")
        )
        self.max_len, self.padding, self.truncating = prep["max_len"], prep["padding"], prep["truncating"]
        self.ngrams = prep.get("ngrams", 1)
        self.net = build_net(ckpt["hyper_parameters"]["net"])
        prefix = "net."  # the LightningModule holds the network as `net`
        weights = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        self.net.load_state_dict(weights)
        try:
            self.device = torch.device(device)
            self.net.to(self.device).eval()
        except (RuntimeError, AssertionError) as err:  # unknown name; no such GPU or no CUDA build
            raise SentimentError(
                f"--device {device}: {first_line(err)}: use cpu, or cuda where torch sees a GPU"
            ) from err
        self.batch_size = batch_size

    def encode(self, text: str) -> tuple[np.ndarray, int, int]:
        """(ids truncated like training, token count, known-token count)."""
        tokens = self.tokenizer.tokenize(text)
        n_words = len(tokens)
        known = sum(t in self.vocab.index for t in tokens)  # words only: at most n_words
        if self.ngrams == 2:
            tokens += bigram_tokens(tokens)
        return truncate(self.vocab.encode(tokens), self.max_len, self.truncating), n_words, known

    @torch.no_grad()
    def predict_proba(self, encoded: list[np.ndarray]) -> np.ndarray:
        """P(positive) for id sequences; batched by length so little goes to padding."""
        order = np.argsort([len(s) for s in encoded], kind="stable")
        probs = np.empty(len(encoded), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(1, max(len(encoded[i]) for i in chunk))
            tokens = pad_sequences([encoded[i] for i in chunk], maxlen=width, padding=self.padding)
            logits = self.net(torch.from_numpy(tokens).to(self.device)).float()
            probs[chunk] = torch.sigmoid(logits).cpu().numpy()
        return probs

    def predict(self, texts: list[str]) -> list[Prediction]:
        """One Prediction per text; empty reviews get no label (never a silent guess)."""
        if isinstance(texts, str):  # else each character would be classified as a review
            raise TypeError("predict takes a list of reviews, not one string: predict([text])")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"review {i} is a {type(text).__name__}, not a string")
        encoded = [self.encode(t) for t in texts]
        scorable = [i for i, t in enumerate(texts) if t.strip()]
        probs = self.predict_proba([encoded[i][0] for i in scorable]) if scorable else []
        results = [Prediction(None, None, 0, 0, "empty review") for _ in texts]
        for i, p in zip(scorable, probs, strict=True):
            _, n_tokens, n_known = encoded[i]
            note = "" if n_known else "no known words"
            results[i] = Prediction(
                "positive" if p >= 0.5 else "negative", round(float(p), 4), n_tokens, n_known, note
            )
        return results


def _read_texts(args: argparse.Namespace) -> list[str]:
    if args.texts:
        return list(args.texts)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise SentimentError(f"--file {path} does not exist: give a text file with one review per line")
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    return sys.stdin.read().splitlines()


def _preview(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sentiment-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt written by train.py")
    parser.add_argument("texts", nargs="*", help="reviews to classify (default: --file, else stdin)")
    parser.add_argument("--file", help="a text file, one review per line")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="reviews a forward pass")
    # options may come after the reviews too: CKPT "A review." --json
    args = parser.parse_intermixed_args(argv)
    try:
        texts = _read_texts(args)
        predictor = SentimentPredictor(args.checkpoint, args.device, args.batch_size)
    except SentimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for i, (text, pred) in enumerate(zip(texts, predictor.predict(texts), strict=True)):
        if args.json:
            print(json.dumps({"index": i, **asdict(pred), "text": _preview(text, 80)}))
        elif pred.label is None:
            print(f"{'-':8}  {'-':6}  [{pred.note}]")
        else:
            note = f"  [{pred.note}]" if pred.note else ""
            print(f"{pred.label:8}  {pred.p_positive:.4f}  {_preview(text)}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
