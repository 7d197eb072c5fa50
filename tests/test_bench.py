import subprocess
import sys

import pytest
import torch

from lightning_sentiment import bench, bench_allocator, bench_loops
from lightning_sentiment.data import corpus as corpus_module

# What the tiny test archive (a few dozen reviews) can feed: small batches and vocabulary.
TINY_OVERRIDES = ["--override", "data.batch_size=8", "data.vocab_size=64", "data.val_size=0.1"]


def test_bench_smoke(tiny_archive, capsys):
    result = bench.main(
        [
            "--archive",
            str(tiny_archive),
            "--smoke",
            "--models",
            "lstm,keras_mlp",
            *TINY_OVERRIDES,
        ]
    )
    assert set(result) == {
        "machine",
        "data",
        "models",
        "lightning_overhead",
        "lightning_floor",
        "predict_per_s",
    }
    floor = result["lightning_floor"]
    # figures, not their order: under load a plain loop's best of two can exceed Lightning's
    # (plain 513.7 us, Lightning 503.1 in session 31, with a training run beside the suite)
    assert floor["plain_us"] > 0 and floor["lightning_us"] > 0 and floor["lightning_train_py_us"] > 0
    # timings only: on a tiny archive cold and warm setups can tie (cached reads: below)
    assert result["data"]["cold_s"] > 0 and result["data"]["warm_s"] > 0
    lstm = result["models"]["lstm"]
    assert lstm["epoch_s"] > 0 and lstm["tokens_per_s"] > 0 and 0 <= lstm["padding_share"] < 1
    assert lstm["lightning_overhead"] > 0 and set(result["predict_per_s"]) == {"lstm"}
    assert '"machine"' in capsys.readouterr().out


def _tiny_fit_cfg(name, archive, tmp_path, *overrides):
    from hydra.utils import instantiate

    cfg = bench.compose_model(
        name, str(archive), str(tmp_path), ["trainer.accelerator=cpu", *TINY_OVERRIDES[1:], *overrides]
    )
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return cfg, datamodule


def test_step_pairing_trains_both_loops_on_the_same_batches_in_turn(tiny_archive, tmp_path, monkeypatch):
    """--pairing step (the CPU default): a plain step between each two Lightning steps, the
    same batches, and the plain loop clips gradients when the config does (lstm: 1.0)."""
    clips = []
    utils = bench_loops.torch.nn.utils
    clip = utils.clip_grad_norm_
    monkeypatch.setattr(utils, "clip_grad_norm_", lambda p, c: clips.append(c) or clip(p, c))
    cfg, datamodule = _tiny_fit_cfg("lstm", tiny_archive, tmp_path)
    light, plain, loop = bench_loops.interleaved_steps(cfg, datamodule, warmup=1, batches=2)
    assert len(light) == len(plain) == 2 and min(light) > 0 and min(plain) > 0
    steps = {int(state["step"]) for state in loop.optimizer.state.values()}
    assert steps == {3}  # warm-up and timed batches: the plain loop trained each once
    assert clips[-3:] == [1.0, 1.0, 1.0]  # as Lightning, from the lstm config's gradient_clip_val


def test_step_pairing_stops_when_the_loops_see_different_batches(tiny_archive, tmp_path, monkeypatch):
    cfg, datamodule = _tiny_fit_cfg("keras_mlp", tiny_archive, tmp_path)
    init = bench_loops.PlainLoop.__init__

    def skip_one(self, *args):
        init(self, *args)
        next(self.loader)  # one batch ahead of Lightning's loader

    monkeypatch.setattr(bench_loops.PlainLoop, "__init__", skip_one)
    with pytest.raises(RuntimeError, match="saw different batches at 3 steps"):
        bench_loops.interleaved_steps(cfg, datamodule, warmup=1, batches=2)


def test_padding_share_counts_the_steps_the_lstm_computes_in_segments(tiny_archive, tmp_path):
    """The default lstm reads 50-token segments: over the padded grid each review costs its
    length rounded up to a multiple of 50 (an empty one, one segment), not the batch's (B, T).
    Random offsets pad each first segment too, so they never cost fewer steps; length
    groups (the default since session 44) never more than the grid."""

    def steps(*overrides):
        cfg, datamodule = _tiny_fit_cfg("lstm", tiny_archive, tmp_path, *overrides)
        torch.manual_seed(0)  # the same segment offsets for each count
        return bench_loops.count_steps(cfg, datamodule, warmup=0, batches=2), datamodule

    (real, fixed), datamodule = steps("model.net.random_offsets=false", "model.net.length_groups=false")
    batches = [batch[0] for batch, _ in zip(datamodule.train_dataloader(), range(2), strict=False)]
    lengths = [int((row != 0).sum()) for tokens in batches for row in tokens]
    assert real == sum(lengths)
    assert fixed == sum(50 * max(1, -(-n // 50)) for n in lengths)
    assert fixed != sum(tokens.numel() for tokens in batches)  # what the batch grid says
    offsets = steps("model.net.length_groups=false")[0][1]
    assert offsets >= fixed
    assert real <= steps("model.net.length_groups=true")[0][1] <= offsets


def test_pairing_is_steps_by_default_on_cpu_and_runs_on_request(tiny_archive):
    args = ["--archive", str(tiny_archive), "--smoke", "--models", "keras_mlp"]
    args += ["--skip", "data,floor,predict"]
    result = bench.main([*args, *TINY_OVERRIDES])
    assert result["models"]["keras_mlp"]["pairing"] == "step"
    result = bench.main([*args, "--pairing", "run", *TINY_OVERRIDES])
    assert result["models"]["keras_mlp"]["pairing"] == "run"
    assert result["models"]["keras_mlp"]["lightning_overhead"] > 0
    assert isinstance(result["models"]["keras_mlp"]["lightning_ms_per_step"], float)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # --warmup 0 used to run a whole --full-epoch and then fail: Lightning's timer never stopped
        (["--warmup", "0"], "argument --warmup: 0 is not an integer >= 1"),
        (["--batches", "0"], "argument --batches: 0 is not an integer >= 1"),  # was an IndexError
        (["--repeats", "0"], "argument --repeats: 0 is not an integer >= 1"),  # was a StatisticsError
        (["--models", "mlp,lstn"], "--models: unknown lstn; use lstm, bilstm, mlp, keras_lstm_500"),
    ],
)
def test_bench_refuses_bad_arguments_before_any_work(tiny_archive, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        bench.main(["--archive", str(tiny_archive), *argv, "--skip", "data,floor,predict"])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_bench_missing_archive_is_one_line(tmp_path):
    missing = tmp_path / "nope.tar.gz"
    result = subprocess.run(
        [sys.executable, "-m", "lightning_sentiment.bench", "--archive", str(missing), "--skip", "floor"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr.strip()
        == f"error: data.archive={missing} does not exist: point it at aclImdb_v1.tar.gz "
        "or leave it unset to download the dataset"
    )


def test_bench_data_times_a_cold_build_then_a_cached_load(tiny_archive, monkeypatch):
    """What `warm_s` times: a setup that reads the cache the cold setup wrote, no tokenizing."""
    builds = []
    build = corpus_module.build_corpus
    monkeypatch.setattr(corpus_module, "build_corpus", lambda *a, **k: builds.append(1) or build(*a, **k))
    figures = bench.bench_data(str(tiny_archive), repeats=2)
    assert len(builds) == 2  # one a cold setup (fresh cache directory each repeat), none warm
    assert figures["cold_s"] > 0 and figures["warm_s"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_allocator_bench_smoke(tiny_archive, capsys):
    """One round: a child process under each trim threshold, paired."""
    result = bench_allocator.main(
        [
            "--archive",
            str(tiny_archive),
            "--models",
            "keras_mlp",
            "--batches",
            "2",
            "--rounds",
            "1",
            *TINY_OVERRIDES,
        ]
    )
    figures = result["keras_mlp"]
    assert figures["batches"] == 2 and figures["seconds_128k"] > 0 and figures["seconds_32m"] > 0
    assert figures["time_ratio_32m_over_128k"] > 0 and figures["faults_128k"] >= 0
    assert '"keras_mlp"' in capsys.readouterr().out


def test_keras_reference_data_follows_keras_num_words_and_padding():
    """bench_keras feeds Keras what its tutorials do: ids by frequency (1 = OOV when there
    is one, rarer words OOV or dropped), padded and cut to maxlen, or a multi-hot."""
    import numpy as np

    from lightning_sentiment import bench_keras

    # word 2 is the most frequent (3x), then 0 (2x), then 1 and 3 (1x; 1 first on the tie)
    token_ids = np.array([2, 0, 2, 1, 2, 0, 3])
    offsets = np.array([0, 3, 7])
    with_oov = bench_keras.encode(token_ids, offsets, vocab=4, oov=True)  # ids 2, 3: two words
    assert [r.tolist() for r in with_oov] == [[2, 3, 2], [1, 2, 3, 1]]
    dropped = bench_keras.encode(token_ids, offsets, vocab=4, oov=False)  # ids 1-3: three words
    assert [r.tolist() for r in dropped] == [[1, 2, 1], [3, 1, 2]]
    spec = dict(bench_keras.TUTORIALS["keras_bilstm_200"], maxlen=2)  # post padding and cut
    assert bench_keras.inputs(with_oov, spec).tolist() == [[2, 3], [1, 2]]
    spec = dict(bench_keras.TUTORIALS["keras_mlp"], vocab=4)
    assert bench_keras.inputs(dropped, spec).tolist() == [[0, 1, 1, 0], [0, 1, 1, 1]]


def test_bench_keras_without_tensorflow_says_how_to_get_it(tiny_archive, capsys, monkeypatch):
    """TensorFlow is no dependency: without it, one message naming the venv to make."""
    from lightning_sentiment import bench_keras

    monkeypatch.setitem(sys.modules, "keras", None)  # as when it is not installed
    with pytest.raises(SystemExit) as exited:
        bench_keras.main(["--archive", str(tiny_archive), "--models", "keras_mlp"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "keras is missing" in err and ".tfenv/bin/pip install" in err


def test_bench_times_lstm_without_training_word2vec_unless_asked(tiny_archive, tmp_path):
    """The starting embedding costs no step; word2vec would add minutes of gensim to every
    benchmark run, so the benchmark starts `lstm` from random, but an override keeps it."""
    cfg = bench.compose_model("lstm", str(tiny_archive), str(tmp_path), [])
    assert cfg.model.net.embed_init is None and cfg.data.vocab_size == 10000  # the rest as train.py
    asked = bench.compose_model("lstm", str(tiny_archive), str(tmp_path), ["model.net.embed_init=word2vec"])
    assert asked.model.net.embed_init == "word2vec"
