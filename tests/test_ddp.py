"""DDP on CPU (gloo): one run dir and one set of files, per-rank shards, DDP sweeps."""

import csv
import json

import numpy as np
import pytest
import torch.distributed as dist

from lightning_sentiment.data.batching import BucketBatchSampler, ShardSampler
from tests.helpers import run_train_py

DDP = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "model=mlp",
    "data.ngrams=1",
    "data.vocab_size=64",
    "data.batch_size=8",
    "trainer.max_epochs=2",
    "threads=1",
]


def fake_rank(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: rank)
    monkeypatch.setattr(dist, "get_world_size", lambda: world)


@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_shards_per_rank(monkeypatch, shuffle):
    lengths = np.random.default_rng(0).integers(1, 300, size=203)
    shards, steps = [], []
    for rank in range(3):
        fake_rank(monkeypatch, rank, 3)
        sampler = BucketBatchSampler(lengths, batch_size=10, shuffle=shuffle, seed=5)
        shards.append([i for batch in sampler for i in batch])
        steps.append(len(list(sampler)))
        assert steps[-1] == len(sampler)
    seen = [i for shard in shards for i in shard]
    assert len(seen) == len(set(seen))  # no review on two ranks
    if shuffle:  # training: equal steps per rank (a remainder of batches is dropped)
        assert len(set(steps)) == 1 and len(seen) >= 203 - 3 * 10
    else:  # evaluation: every review exactly once
        assert sorted(seen) == list(range(203))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("size", [0, 1, 5, 203])
def test_plain_sampler_shards_per_rank(monkeypatch, shuffle, size):
    """data.bucket=false under DDP: the same contract as the length-aware sampler."""
    shards = []
    for rank in range(3):
        fake_rank(monkeypatch, rank, 3)
        sampler = ShardSampler(size, shuffle=shuffle, seed=5)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler)
    seen = [i for shard in shards for i in shard]
    assert len(seen) == len(set(seen))  # no review on two ranks
    if shuffle:  # training: equal shares, a remainder under 3 dropped, epochs reshuffled
        assert {len(s) for s in shards} == {size // 3} and len(seen) == size // 3 * 3
        sampler.set_epoch(3)
        assert size < 5 or list(sampler) != shards[-1]
    else:  # evaluation: every review exactly once
        assert sorted(seen) == list(range(size))


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 1000, 1600, 1601, 3333])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_length_is_what_it_yields(monkeypatch, size, drop_last):
    """len() is counted, not built: it must equal the batches of every rank and mode."""
    lengths = np.random.default_rng(size).integers(1, 300, size=size)
    for world in (1, 2, 3):
        for rank in range(world):
            fake_rank(monkeypatch, rank, world)
            for shuffle in (True, False):
                sampler = BucketBatchSampler(lengths, 32, shuffle=shuffle, seed=3, drop_last=drop_last)
                assert len(sampler) == len(list(sampler)), (world, rank, shuffle)


def sweep_tail(tmp_path, archive) -> list[str]:
    """A 2-job sweep on the tiny archive, writing under tmp_path."""
    return [
        "model.net.hidden_units=4,8",
        f"data.archive={archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        [],  # trainer=ddp, length-aware batches
        # the default trainer with two devices (Lightning picks DDP itself), plain batches:
        # before, Lightning tried to rebuild the length-aware sampler and failed
        ["trainer=default", "data.bucket=false"],
    ],
)
def test_two_process_ddp_run_writes_one_run_dir(tmp_path, tiny_archive, variant):
    where = [
        f"data.archive={tiny_archive}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = run_train_py(*DDP, *variant, *where, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]  # no second run dir
    run_dir = tmp_path / "run"
    assert len(list(run_dir.rglob("metrics.json"))) == 1
    events = list(run_dir.rglob("events.out.*"))
    assert {e.parent for e in events} == {run_dir / "tensorboard"}  # one TensorBoard run...
    assert len({e.name.split(".")[-2] for e in events}) == 1  # ...written by one process (rank 0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0 < metrics["test/acc"] <= 1
    assert sum(sum(row) for row in metrics["test/confusion"]) == 80  # the test set, gathered from both ranks
    assert len((run_dir / "test_predictions.csv").read_text().splitlines()) == 81
    assert "world_size: 2" in result.stderr or "distributed_backend=gloo" in result.stderr


@pytest.mark.slow
def test_ddp_multirun_runs_each_job_once(tmp_path, tiny_archive):
    result = run_train_py("-m", *DDP, *sweep_tail(tmp_path, tiny_archive), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "sweep"]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["completed", "completed"]


def _has(plugin: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"hydra_plugins.{plugin}") is not None


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["submitit_local", "joblib_local"])
def test_sweep_launchers(tmp_path, tiny_archive, launcher):
    plugin = {"submitit_local": "hydra_submitit_launcher", "joblib_local": "hydra_joblib_launcher"}[launcher]
    if not _has(plugin):
        pytest.skip(f"{plugin} is in the [sweep] extra: pip install -e '.[sweep]'")
    single_process = [*DDP[3:], "trainer.accelerator=cpu"]
    result = run_train_py(
        "-m", f"hydra/launcher={launcher}", *single_process, *sweep_tail(tmp_path, tiny_archive), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert sorted(r["job"] for r in rows) == ["0", "1"] and {r["status"] for r in rows} == {"completed"}
