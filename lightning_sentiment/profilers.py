"""The Trainer's default profiler (`trainer.profiler` in conf/trainer/default.yaml)."""

from __future__ import annotations

import contextlib

from pytorch_lightning.profilers import PassThroughProfiler

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's pass-through profiler (what `profiler=None` gives), made cheaper.

    Lightning wraps every hook call, some 60 a step with train.py's callbacks, in
    `profiler.profile(name)`, a generator-based context manager even when it records
    nothing: ~1 us each, 60 us a step on CPU. A shared no-op context costs nothing.
    `trainer.profiler=simple` (or advanced, pytorch) profiles for real.
    """

    def profile(self, action_name: str) -> contextlib.nullcontext:  # type: ignore[override]
        return _NOTHING
