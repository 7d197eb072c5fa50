"""What the run's machine decides: torch threads, bf16 on CPUs, a GPU asked for where
there is none, and DDP's relaunched processes inside a multirun."""

from __future__ import annotations

import logging
import os
import sys

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write

from lightning_sentiment.errors import SettingError, check_count

log = logging.getLogger(__name__)


def configure_threads(threads: int | None) -> int:
    """torch threads: given, else the cores divided among parallel sweep jobs (joblib)."""
    if threads is not None:
        check_count("threads", threads, also=", or null (the cores, split among jobs)")
    else:
        jobs = 1
        if HydraConfig.initialized():
            jobs = HydraConfig.get().launcher.get("n_jobs") or 1
        cores = os.cpu_count() or 1
        jobs = cores if jobs < 0 else jobs  # joblib: -1 = one job per core
        threads = max(1, cores // jobs)
    torch.set_num_threads(threads)
    return threads


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512_BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, private
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def warn_if_emulated_bf16(trainer: pl.Trainer) -> None:
    """bf16 on a CPU without it in hardware is emulated: slower than fp32, not faster."""
    bf16 = str(trainer.precision).startswith("bf16")
    if bf16 and trainer.strategy.root_device.type == "cpu" and not native_bf16():
        log.warning(
            "precision %s on a CPU without native bf16 (AVX512_BF16 or AMX) is emulated and "
            "slower than fp32: use trainer=cpu (32-true) on this machine",
            trainer.precision,
        )


def check_accelerator(accelerator: str | None) -> None:
    """A GPU asked for where torch sees none: one line with what to do, not Lightning's
    "No supported gpu backend found!"."""
    if str(accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA device visible"
        raise SettingError(
            f"trainer.accelerator={accelerator}, but torch sees no GPU here ({build}): leave "
            "trainer at its default (auto) or use trainer=cpu"
        )


def relaunch_ddp_children_as_this_job() -> None:
    """Lightning's DDP starts each extra process by re-running `sys.argv`. Inside a
    multirun that command is the whole sweep (`-m a,b,c`): make it this job alone,
    writing into this job's dir, so a DDP sweep runs each job once."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir  # Lightning passes run.dir on
