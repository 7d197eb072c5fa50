import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_sentiment import memory


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
