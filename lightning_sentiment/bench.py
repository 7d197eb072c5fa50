"""Benchmark: data setup, training speed per model, Lightning overhead, prediction speed.

    python -m lightning_sentiment.bench                       # everything, IMDB from IMDB_ARCHIVE
    python -m lightning_sentiment.bench --models mlp --batches 20 --repeats 2
    python -m lightning_sentiment.bench --smoke               # seconds: what CI runs

Prints one JSON object. Each figure is the median of `--repeats` runs after a
warm-up. Epoch seconds are extrapolated from `--batches` training batches drawn
by the real length-aware sampler to the 25,000 training reviews (`--full-epoch`
times whole epochs instead). Lightning runs with train.py's callbacks and logger.
`lightning_overhead` compares it with a hand-written loop training the same model on
the same batches: on a CPU the two take turns, a step each, in one run, and the figure
is the median of the steps' ratios (`--pairing step`; a shared machine's load drifts
within seconds, and a single step's spike does not move a median); on a GPU, where
timing each step would stop the queue, separate runs alternate (`--pairing run`).
`lightning_floor` is Lightning's fixed cost per step, measured on a near-empty model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lightning_sentiment.memory import configure_cpu_memory

configure_cpu_memory()  # as train.py does, before torch is imported

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from lightning_sentiment.bench_floor import bench_step_floor  # noqa: E402
from lightning_sentiment.bench_loops import (  # noqa: E402
    count_steps,
    interleaved_steps,
    lightning_seconds,
    plain_seconds,
)
from lightning_sentiment.data import SentimentDataModule  # noqa: E402
from lightning_sentiment.data.imdb import read_reviews  # noqa: E402
from lightning_sentiment.errors import SentimentError, positive_int  # noqa: E402
from lightning_sentiment.hardware import configure_threads, native_bf16  # noqa: E402
from lightning_sentiment.predict import SentimentPredictor  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
TRAIN_REVIEWS = 25_000
MODELS = ("lstm", "bilstm", "mlp")
EXPERIMENTS = ("keras_lstm_500", "keras_lstm_80", "keras_bilstm_200", "keras_mlp")


def machine() -> dict:
    info = {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": "cpu",
        "native_bf16": native_bf16(),  # trainer=cpu_bf16 pays off only where true
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def bench_data(archive: str, repeats: int) -> dict:
    """Setup of all 50,000 reviews without cache (cold) and with it (warm)."""
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            for times in (cold, warm):
                start = time.perf_counter()
                SentimentDataModule(data_dir=tmp, archive=archive).setup("fit")
                times.append(time.perf_counter() - start)
    return {"cold_s": round(statistics.median(cold), 3), "warm_s": round(statistics.median(warm), 3)}


def compose_model(name: str, archive: str, data_dir: str, overrides: list[str]):
    """A model config (`lstm`) or an experiment (`keras_lstm_500`), as train.py composes it."""
    group = "experiment" if name in EXPERIMENTS else "model"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        # No validation here, so no scheduler that waits for validation metrics.
        cfg = compose(config_name="train", overrides=[f"{group}={name}", "model.scheduler=null", *overrides])
    with open_dict(cfg):
        cfg.data.archive, cfg.data.data_dir = archive, data_dir
        cfg.paths = {"root_dir": data_dir, "data_dir": data_dir, "log_dir": data_dir, "output_dir": data_dir}
        if cfg.model.net.get("embed_init") and not any("embed_init=" in o for o in overrides):
            # where the embedding starts costs no step any time, and word2vec would add
            # minutes of gensim to every benchmark run (its data dir is a fresh one)
            cfg.model.net.embed_init = None
    return cfg


def bench_model(name: str, archive: str, data_dir: str, args) -> dict:
    trainer = ["trainer=gpu"] if args.device == "gpu" else ["trainer.accelerator=cpu"]
    overrides = [*trainer, *args.override]  # trainer=gpu: 16-mixed unless overridden
    cfg = compose_model(name, archive, data_dir, overrides)
    configure_threads(cfg.get("threads"))  # as train.py: `--override threads=1` applies
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    available = len(datamodule.train_dataloader()) - args.warmup
    batches = available if args.full_epoch else min(args.batches, available)
    reviews = batches * cfg.data.batch_size
    t = _paired_timings(cfg, datamodule, args, batches)
    real, computed = count_steps(cfg, datamodule, args.warmup, batches)
    light = statistics.median(t["light"])
    return {
        "epoch_s": round(light * TRAIN_REVIEWS / reviews, 2),
        "tokens_per_s": round(real / light),
        "padding_share": round(1 - real / computed, 4),
        "plain_loop_epoch_s": round(statistics.median(t["plain"]) * TRAIN_REVIEWS / reviews, 2),
        "lightning_overhead": round(statistics.median(t["ratios"]), 4),  # Lightning / plain, paired
        "pairing": args.pairing,
        "lightning_ms_per_step": round(statistics.median(t["extra"]) * 1e3, 3),  # Lightning - plain
        "data_share": round(statistics.median(t["data"]), 4),  # of the plain loop's time: batch loading
        "measured_batches": batches,
    }


def _paired_timings(cfg, datamodule, args, batches: int) -> dict[str, list[float]]:
    """`args.repeats` timings of Lightning (`light`) and the plain loop (`plain`), seconds;
    their paired `ratios` and `extra` seconds a step; the plain loop's `data` share."""
    t: dict[str, list[float]] = {key: [] for key in ("plain", "light", "data", "ratios", "extra")}
    for repeat in range(args.repeats):
        if args.pairing == "step":
            light_steps, plain_steps, loop = interleaved_steps(cfg, datamodule, args.warmup, batches)
            t["light"].append(sum(light_steps))
            seconds, data_s = sum(plain_steps), loop.data_s
            # a step's pair saw the same batch at the same moment: the median is robust
            # to the spikes a shared machine adds to single steps
            t["ratios"] += [lig / pla for lig, pla in zip(light_steps, plain_steps, strict=True)]
            t["extra"] += [lig - pla for lig, pla in zip(light_steps, plain_steps, strict=True)]
        else:
            # Alternate which loop goes first: on a shared machine the load drifts, and a
            # pair measured back to back sees the same load (hence the median of the ratios).
            if repeat % 2:
                t["light"].append(lightning_seconds(cfg, datamodule, args.warmup, batches))
            seconds, data_s = plain_seconds(cfg, datamodule, args.warmup, batches)
            if not repeat % 2:
                t["light"].append(lightning_seconds(cfg, datamodule, args.warmup, batches))
            t["ratios"].append(t["light"][-1] / seconds)
            t["extra"].append((t["light"][-1] - seconds) / batches)
        t["plain"].append(seconds)
        t["data"].append(data_s / seconds)
    return t


def bench_predict(
    name: str, archive: str, data_dir: str, texts: list[str], device: str, overrides=()
) -> float:
    """Reviews per second through `SentimentPredictor` (tokenization included), untrained weights."""
    cfg = compose_model(name, archive, data_dir, ["trainer.accelerator=cpu", *overrides])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, _recursive_=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=data_dir,
    )
    trainer.fit(model, datamodule=datamodule)
    ckpt = Path(data_dir) / f"{name}.ckpt"
    trainer.save_checkpoint(ckpt)
    predictor = SentimentPredictor(ckpt, device="cuda" if device == "gpu" else "cpu")
    predictor.predict(texts[:256])  # warm-up
    start = time.perf_counter()
    predictor.predict(texts)
    return round(len(texts) / (time.perf_counter() - start), 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default=os.environ.get("IMDB_ARCHIVE"), help="IMDB .tar.gz")
    parser.add_argument("--models", default=",".join(MODELS + EXPERIMENTS), help="configs, comma-separated")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batches", type=positive_int, default=40, help="timed training batches per model")
    # at least 1: Lightning's timer starts at the end of a batch, so there must be one before
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed batches first (at least 1)")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--full-epoch", action="store_true", help="time whole epochs")
    parser.add_argument(
        "--pairing",
        choices=["step", "run"],
        help="Lightning against the plain loop: a step of each in turn in one run (step, the CPU "
        "default) or separate runs (run, the GPU default: per-step timing would stop its queue)",
    )
    parser.add_argument("--predict-reviews", type=positive_int, default=5000)
    parser.add_argument("--skip", default="", help="parts to skip: data,models,floor,predict")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, for CI")
    parser.add_argument(
        "--override", nargs="*", default=[], help="extra Hydra overrides, e.g. data.batch_size=8"
    )
    args = parser.parse_args(argv)
    if not args.archive:
        parser.error("pass --archive PATH or set IMDB_ARCHIVE")
    unknown = [m for m in args.models.split(",") if m and m not in MODELS + EXPERIMENTS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; use {', '.join(MODELS + EXPERIMENTS)}")
    if args.pairing is None:
        args.pairing = "run" if args.device == "gpu" else "step"
    if args.smoke:
        args.batches, args.warmup, args.repeats, args.predict_reviews = 2, 1, 1, 200
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    skip = set(args.skip.split(","))
    result: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory() as data_dir:
        if "data" not in skip:
            result["data"] = bench_data(args.archive, args.repeats if not args.smoke else 1)
        models = [m for m in args.models.split(",") if m]
        if "models" not in skip:
            result["models"] = {m: bench_model(m, args.archive, data_dir, args) for m in models}
            result["lightning_overhead"] = max(r["lightning_overhead"] for r in result["models"].values())
        if "floor" not in skip:  # Lightning's fixed cost per step, whatever the model
            result["lightning_floor"] = bench_step_floor(
                50 if args.smoke else 2000, data_dir, compose_model("mlp", "unused", data_dir, [])
            )
        if "predict" not in skip:
            raw = read_reviews(Path(args.archive))
            test = [t for t, is_test in zip(raw.texts, raw.is_test, strict=True) if is_test]
            texts = test[:: max(1, len(test) // args.predict_reviews)][: args.predict_reviews]
            result["predict_per_s"] = {
                m: bench_predict(m, args.archive, data_dir, texts, args.device, args.override)
                for m in models
                if m in MODELS
            }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    try:
        main()
    except SentimentError as err:  # a missing archive, a bad --override: one line
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
