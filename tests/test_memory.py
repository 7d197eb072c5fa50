import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_sentiment import callbacks, memory


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_settings_applied(clean_env, monkeypatch):
    assert memory.configure_cpu_memory() is True
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"


def test_user_settings_win(clean_env, monkeypatch):
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.configure_cpu_memory() is False  # glibc's threshold left as the user set it
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


# An 8 MB block, below the 16 MB mmap threshold: malloc'd, written, freed, then again.
# The page faults of the second round tell whether glibc kept the freed heap top.
REFAULT = (
    "import ctypes, resource\n"
    "from lightning_sentiment.memory import configure_cpu_memory\n"
    "configure_cpu_memory()\n"
    "libc = ctypes.CDLL(None)\n"
    "libc.malloc.restype = ctypes.c_void_p\n"
    "libc.free.argtypes = [ctypes.c_void_p]\n"
    "def cycle():\n"
    "    block = libc.malloc(8 << 20)\n"
    "    ctypes.memset(block, 1, 8 << 20)\n"
    "    libc.free(block)\n"
    "cycle()\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "cycle()\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("user_trim", [None, "131072"])
def test_freed_heap_is_kept_for_the_next_step(user_trim):
    """Our 32 MB trim threshold keeps a freed 8 MB block: no page faults the second time.
    A user's MALLOC_TRIM_THRESHOLD_ (glibc's 128 KB default here) wins: ~2,000 faults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if user_trim:
        env["MALLOC_TRIM_THRESHOLD_"] = user_trim
    out = subprocess.run([sys.executable, "-c", REFAULT], capture_output=True, text=True, env=env, check=True)
    faults = int(out.stdout.split()[-1])
    assert faults > 1000 if user_trim else faults < 100


def test_train_py_configures_before_torch_is_imported():
    # torch reads THP_MEM_ALLOC_ENABLE once: the setting must come before its import.
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def spy(name, *a, **k):\n"
        "    if name == 'torch' and 'torch' not in sys.modules:\n"
        "        import os; print('THP at torch import:', os.environ.get('THP_MEM_ALLOC_ENABLE'))\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = spy\n"
        "sys.argv = ['train.py']\n"
        "import train\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert "THP at torch import: 1" in out.stdout


# 40 blocks of 8 MB, under the 16 MB mmap threshold: from the heap, written, freed. glibc
# keeps their pages; trim_heap hands them back. Prints resident MB before and after.
TRIM = (
    "import ctypes\n"
    "from lightning_sentiment.memory import configure_cpu_memory, resident_bytes, trim_heap\n"
    "configure_cpu_memory()\n"
    "libc = ctypes.CDLL(None)\n"
    "libc.malloc.restype = ctypes.c_void_p\n"
    "libc.malloc.argtypes = [ctypes.c_size_t]\n"
    "libc.free.argtypes = [ctypes.c_void_p]\n"
    "pin = []\n"
    "blocks = []\n"
    "for _ in range(40):\n"
    "    blocks.append(libc.malloc(8 << 20))\n"
    "    ctypes.memset(blocks[-1], 1, 8 << 20)\n"
    "    pin.append(libc.malloc(1 << 20))  # a live block above each: no free top to shrink\n"
    "for block in blocks:\n"
    "    libc.free(block)\n"
    "before = resident_bytes()\n"
    "print(before >> 20, trim_heap(), resident_bytes() >> 20)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_heap_releases_freed_pages_inside_the_heap():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, text=True, env=env, check=True)
    before, trimmed, after = out.stdout.split()
    assert trimmed == "True"
    assert int(before) - int(after) > 250  # of the 320 MB freed


class _Clock:
    """Resident bytes as the test sets them; counts trims."""

    def __init__(self, monkeypatch):
        self.resident, self.trims = 0, 0
        monkeypatch.setattr(callbacks, "resident_bytes", lambda: self.resident)
        monkeypatch.setattr(callbacks, "trim_heap", self.trim)

    def trim(self):
        self.trims += 1
        self.resident = 300 << 20  # what a trim leaves
        return True


def test_heap_trim_before_long_batches_only_when_the_heap_grew(monkeypatch):
    clock = _Clock(monkeypatch)
    cb = callbacks.HeapTrim(share=0.5, min_release_mb=256)
    batch = lambda rows, steps: (torch.ones(rows, steps, dtype=torch.long), torch.zeros(rows))  # noqa: E731
    clock.resident = 1000 << 20
    cb.on_train_batch_start(None, None, batch(64, 100), 0)  # the largest so far: long
    assert clock.trims == 1
    clock.resident = 1200 << 20
    cb.on_train_batch_start(None, None, batch(64, 40), 1)  # short: under half of 6,400 ids
    cb.on_train_batch_start(None, None, batch(64, 60), 2)  # long, but grew 900 MB since: trims
    assert clock.trims == 2
    clock.resident = 500 << 20  # grew 200 MB since the trim: under 256, kept
    cb.on_train_batch_start(None, None, batch(64, 100), 3)
    assert clock.trims == 2
    clock.resident = 800 << 20
    cb.on_train_batch_start(None, None, batch(64, 50), 4)  # exactly half of the largest: long
    assert clock.trims == 3
    # each stage has its own largest batch: a 256-row evaluation batch does not make
    # every training batch short
    clock.resident = 2000 << 20
    cb.on_validation_batch_start(None, None, batch(256, 100), 0)
    assert clock.trims == 4
    clock.resident = 2000 << 20
    cb.on_train_batch_start(None, None, batch(64, 100), 5)
    assert clock.trims == 5
    assert cb.trims == 5


def test_heap_trim_leaves_other_devices_and_bad_shares(monkeypatch):
    clock = _Clock(monkeypatch)
    clock.resident = 4000 << 20
    cb = callbacks.HeapTrim()
    meta = torch.ones(64, 100, dtype=torch.long, device="meta")  # not the CPU heap
    cb.on_test_batch_start(None, None, (meta, meta), 0)
    assert clock.trims == 0
    with pytest.raises(ValueError, match="share must be in"):
        callbacks.HeapTrim(share=1.5)
