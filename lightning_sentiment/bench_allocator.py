"""Benchmark: glibc's trim threshold, 128 KB (frozen there once the mmap threshold is
fixed) against memory.py's 32 MB, on plain-loop training epochs.

    python -m lightning_sentiment.bench_allocator --models keras_mlp,keras_lstm_80

The heap's layout from process start decides what a trim can hand back, so each
measurement is a fresh process (`MALLOC_TRIM_THRESHOLD_=131072` in its environment
for 128 KB, which memory.py leaves alone), the two settings alternating round by
round so both see the same machine load. Prints one JSON object: per model the
median page faults and seconds of a training pass under each setting and the median
of the paired time ratios (32 MB / 128 KB). Linux with glibc only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from lightning_sentiment.memory import configure_cpu_memory

configure_cpu_memory()  # as train.py does, before torch is imported

from hydra.utils import instantiate  # noqa: E402

from lightning_sentiment.bench import compose_model  # noqa: E402

GLIBC_TRIM_BYTES = 128 << 10  # glibc's default, which a fixed mmap threshold freezes


def _epoch(model, optimizer, batches) -> tuple[float, int]:
    """(seconds, minor page faults) of one plain-loop pass over `batches`."""
    start, faults = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for batch in batches:
        loss, _, _ = model.model_step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def measure(name: str, archive: str, data_dir: str, batches: int, overrides=()) -> dict:
    """In this process: (seconds, page faults) of the second of two passes over `batches`."""
    cfg = compose_model(name, archive, data_dir, ["trainer.accelerator=cpu", *overrides])
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, _recursive_=False)
    optimizer = model.configure_optimizers()["optimizer"]
    loaded = [b for _, b in zip(range(batches), datamodule.train_dataloader(), strict=False)]
    _epoch(model, optimizer, loaded)  # warm-up
    seconds, faults = _epoch(model, optimizer, loaded)
    return {"seconds": seconds, "faults": faults, "batches": len(loaded)}


def bench_trim(name: str, archive: str, data_dir: str, batches: int, rounds: int, overrides=()) -> dict:
    settings = {"128k": {"MALLOC_TRIM_THRESHOLD_": str(GLIBC_TRIM_BYTES)}, "32m": {}}
    runs: dict[str, list[dict]] = {k: [] for k in settings}
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    child = [
        sys.executable,
        "-m",
        "lightning_sentiment.bench_allocator",
        "--child",
        name,
        "--archive",
        archive,
        "--data-dir",
        data_dir,
    ]
    child += ["--batches", str(batches), "--override", *overrides]
    for r in range(rounds):
        for key in list(settings) if r % 2 == 0 else list(settings)[::-1]:  # neither always first
            out = subprocess.run(
                child, env={**env, **settings[key]}, capture_output=True, text=True, check=True
            )
            runs[key].append(json.loads(out.stdout.strip().splitlines()[-1]))
    pairs = zip(runs["128k"], runs["32m"], strict=True)
    figures = {"batches": runs["32m"][0]["batches"]}
    for key, measured in runs.items():
        figures[f"faults_{key}"] = statistics.median(m["faults"] for m in measured)
        figures[f"seconds_{key}"] = round(statistics.median(m["seconds"] for m in measured), 4)
    figures["time_ratio_32m_over_128k"] = round(
        statistics.median(new["seconds"] / old["seconds"] for old, new in pairs), 3
    )
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default=os.environ.get("IMDB_ARCHIVE"), help="IMDB .tar.gz")
    parser.add_argument("--models", default="keras_mlp,mlp,keras_lstm_80,keras_bilstm_200")
    parser.add_argument("--batches", type=int, default=40, help="training batches a pass")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in this process
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.archive:
        parser.error("pass --archive PATH or set IMDB_ARCHIVE")
    if args.child:
        result = measure(args.child, args.archive, args.data_dir, args.batches, args.override)
        print(json.dumps(result))
        return result
    with tempfile.TemporaryDirectory() as data_dir:
        result = {
            m: bench_trim(m, args.archive, data_dir, args.batches, args.rounds, args.override)
            for m in args.models.split(",")
            if m
        }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
