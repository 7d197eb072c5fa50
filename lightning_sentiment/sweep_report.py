"""Summaries of a Hydra multirun: one row per job, best first.

Written automatically at the end of every multirun (a Hydra callback configured in
`conf/hydra/default.yaml`), or on demand:

    python -m lightning_sentiment.sweep_report outputs/multirun/2026-11-22/13-00-00
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback

from lightning_sentiment.atomic import atomic_write_text

FIGURES = ("val/acc_best", "test/acc", "epochs", "fit_seconds", "epoch_seconds")  # from metrics.json
COLUMNS = ("job", "overrides", *FIGURES, "status", "error")  # error: a failed job's one line


def collect(sweep_dir: Path) -> list[dict]:
    """One row per job folder (those holding `.hydra/`), sorted best val/acc_best first."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=_job_order):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        metrics_file = job / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        rows.append(
            {
                "job": job.name,
                "overrides": " ".join(o for o in overrides if not o.startswith("hydra")),
                **{name: metrics.get(name) for name in FIGURES},
                "status": metrics.get("status", "failed"),
                "error": metrics.get("error", ""),
            }
        )
    return sorted(rows, key=lambda r: (r["status"] != "completed", -_number(r["val/acc_best"])))


def _job_order(path: Path) -> tuple:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else -math.inf


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value).replace("|", "\\|")  # a table cell


def write_report(sweep_dir: str | Path) -> list[dict]:
    """summary.csv, summary.md and summary.png in the sweep dir; returns the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(sweep_dir / "summary.csv", buf.getvalue())
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    atomic_write_text(sweep_dir / "summary.md", f"# Sweep {sweep_dir}\n\n" + "\n".join(lines) + "\n")
    if rows:
        _plot(rows, sweep_dir / "summary.png")
    return rows


def _plot(rows: list[dict], path: Path) -> None:
    from lightning_sentiment.reports import plt, save_figure

    shown = rows[:40]
    labels = [f"{r['job']}: {label}" for r, label in zip(shown, _short_labels(shown), strict=True)]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.32 * len(shown)))
    y = range(len(shown))
    for offset, key, color in ((-0.2, "val/acc_best", "tab:blue"), (0.2, "test/acc", "tab:orange")):
        values = [max(_number(r[key]), 0.0) for r in shown]
        ax.barh([i + offset for i in y], values, height=0.4, label=key, color=color)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()  # best at the top
    finite = [_number(r[k]) for r in shown for k in ("val/acc_best", "test/acc") if _number(r[k]) > 0]
    ax.set_xlim(max(0.0, min(finite, default=0.5) - 0.02), min(1.0, max(finite, default=1.0) + 0.01))
    ax.set_xlabel("accuracy")
    ax.set_title(
        f"Sweep: {len(rows)} jobs, best first ({sum(r['status'] != 'completed' for r in rows)} failed)"
    )
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def _short_labels(rows: list[dict]) -> list[str]:
    """Only the overrides that differ between jobs, keys cut to their last part."""
    split = [r["overrides"].split() for r in rows]
    common = set.intersection(*(set(o) for o in split)) if split else set()
    return [
        " ".join(
            f"{k.rsplit('.', 1)[-1]}={v}" for k, _, v in (o.partition("=") for o in ov if o not in common)
        )
        for ov in split
    ]


class SweepReport(Callback):
    """Hydra callback: write the summary when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            rows = write_report(sweep_dir)
            print(f"Sweep summary ({len(rows)} jobs): {sweep_dir / 'summary.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Summarize a Hydra multirun directory.")
    parser.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir() or not any((p / ".hydra").is_dir() for p in sweep_dir.iterdir()):
        # not even a summary written into a folder that is no sweep
        parser.error(f"{sweep_dir} holds no Hydra jobs: pass a multirun dir, outputs/multirun/<date>/<time>")
    rows = write_report(sweep_dir)
    print((sweep_dir / "summary.md").read_text())
    print(f"{len(rows)} jobs")


if __name__ == "__main__":
    main()
