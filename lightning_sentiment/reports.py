"""Run reports: learning curves, confusion matrix, test predictions, worst errors.

Everything is written into the run dir after testing, and the pictures also go
to TensorBoard, so a run can be understood without reading logs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
from pytorch_lightning.loggers import TensorBoardLogger  # noqa: E402

from lightning_sentiment.atomic import atomic_path, atomic_write_text  # noqa: E402


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, train against validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split, style in (("train", "o-"), ("val", "s--")):
            points = [(r["epoch"], r[f"{split}/{metric}"]) for r in history if f"{split}/{metric}" in r]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.set_title(f"{'Accuracy' if metric == 'acc' else 'Loss'} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    save_figure(fig, path)


def confusion(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """2x2 counts: rows = true (neg, pos), columns = predicted (neg, pos)."""
    predicted = (probs >= 0.5).astype(int)
    matrix = np.zeros((2, 2), dtype=int)
    np.add.at(matrix, (labels.astype(int), predicted), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, path: Path | None = None):
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(matrix, cmap="Blues")
    total = matrix.sum()
    for (i, j), n in np.ndenumerate(matrix):
        color = "white" if n > matrix.max() / 2 else "black"
        ax.text(j, i, f"{n}\n({n / total:.1%})", ha="center", va="center", color=color, fontsize=12)
    ax.set_xticks([0, 1], ["negative", "positive"])
    ax.set_yticks([0, 1], ["negative", "positive"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Test set: accuracy {np.trace(matrix) / total:.2%} of {total}")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, close=False)
    return fig


def write_predictions_csv(path: Path, names: list[str], labels: np.ndarray, probs: np.ndarray) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["review", "label", "p_positive"])
    for name, label, p in zip(names, labels, probs, strict=True):
        writer.writerow([name, int(label), f"{p:.6f}"])
    atomic_write_text(path, buf.getvalue())


def write_errors_md(path: Path, names, labels, probs, texts, k: int = 20, width: int = 400) -> None:
    """The k most confidently wrong test reviews, for error analysis."""
    wrongness = np.where(labels == 1, 1 - probs, probs)  # confidence in the wrong answer
    worst = [i for i in np.argsort(-wrongness, kind="stable")[:k] if wrongness[i] > 0.5]
    lines = [f"# The {len(worst)} most confidently wrong test reviews", ""]
    lines += ["| # | review | true | P(positive) | text |", "|---|---|---|---|---|"]
    for rank, i in enumerate(worst, 1):
        text = " ".join(texts[i].replace("<br />", " ").split())
        text = (text[:width] + "...") if len(text) > width else text
        text = text.replace("|", "\\|")
        true = "positive" if labels[i] else "negative"
        lines.append(f"| {rank} | {names[i]} | {true} | {probs[i]:.4f} | {text} |")
    atomic_write_text(path, "\n".join(lines) + "\n")


def log_to_tensorboard(
    trainer: pl.Trainer, labels: np.ndarray, probs: np.ndarray, matrix: np.ndarray
) -> None:
    """Confusion matrix image and PR curve in TensorBoard (when it is a logger)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            step = trainer.global_step
            fig = plot_confusion(matrix)
            logger.experiment.add_figure("test/confusion_matrix", fig, global_step=step)
            logger.experiment.add_pr_curve("test/pr_curve", labels.astype(int), probs, global_step=step)
            logger.experiment.flush()


def save_figure(fig, path: Path, close: bool = True) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    if close:
        plt.close(fig)


def write_run_reports(trainer: pl.Trainer, predictions, datamodule, out: Path) -> dict:
    """The test-set report files of a tested run; returns the confusion counts for metrics.json.

    `predictions`: (corpus indices, P(positive)) of the whole test set.
    """
    from lightning_sentiment.data import imdb
    from lightning_sentiment.data.stats import review_names

    index, probs = (t.numpy() for t in predictions)
    corpus = datamodule.corpus
    labels = corpus.labels[index].astype(int)
    names = review_names(corpus, index)
    matrix = confusion(labels, probs)
    plt.close(plot_confusion(matrix, out / "confusion_matrix.png"))
    write_predictions_csv(out / "test_predictions.csv", names, labels, probs)
    # The cache keeps ids, not text: re-read the source for the handful of reviews shown.
    texts = imdb.read_reviews(datamodule.source()).texts
    write_errors_md(out / "errors.md", names, labels, probs, [texts[i] for i in index])
    log_to_tensorboard(trainer, labels, probs, matrix)
    return {"test/confusion": matrix.tolist()}
