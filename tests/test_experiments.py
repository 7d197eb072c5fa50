"""Experiments reproduce the classic tutorials; sweeps write a summary."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from lightning_sentiment.pipeline import train
from lightning_sentiment.sweep_report import main as sweep_report_main
from lightning_sentiment.sweep_report import write_report
from tests.helpers import run_train_py

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
PUBLISHED_PARAMS = {"keras_lstm_80": 693_301, "keras_bilstm_200": 173_205, "keras_mlp": 160_305}


def test_the_documented_experiments_exist():
    assert EXPERIMENTS == ["keras_bilstm_200", "keras_lstm_500", "keras_lstm_80", "keras_mlp", "mlp_grid"]


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_the_published_ones(train_cfg, name):
    cfg = train_cfg([f"experiment={name}"])
    cfg.data.vocab_size = {"keras_lstm_80": 20000}.get(name, 10000)  # the fixture shrinks it
    module = instantiate(cfg.model, _recursive_=False)
    assert sum(p.numel() for p in module.parameters()) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_a_fast_dev_run(train_cfg, name):
    small = ["data.val_size=0.25"] if name in ("keras_mlp", "mlp_grid") else []  # not 10,000 of 80
    cfg = train_cfg([f"experiment={name}", "debug=fdr", *small])
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1


@pytest.mark.parametrize("name", ["keras_bilstm_200", "keras_lstm_500", "keras_lstm_80"])
def test_tutorial_lstms_start_from_a_random_embedding_and_read_the_whole_grid(train_cfg, name):
    # the tutorials train their embedding from scratch; the lstm default's word2vec and
    # pretraining would change what they reproduce (and add minutes of gensim)
    net = train_cfg([f"experiment={name}"]).model.net
    assert (net.embed_init, net.lm_pretrain, net.next_word, net.review_lstm) == (None, 0, 0.0, 0)
    assert net.length_groups is False  # whole reviews in length-bucketed batches: the tutorial's path


def test_experiment_settings(train_cfg):
    cfg = train_cfg(["experiment=keras_bilstm_200"])
    assert (cfg.data.split, cfg.data.padding, cfg.data.truncating) == ("random", "post", "post")
    assert cfg.callbacks.early_stopping.patience == 2 and cfg.model.net.bidirectional
    grid = train_cfg(["experiment=mlp_grid"])
    params = grid.hydra.sweeper.params
    assert [len(str(v).split(",")) for v in params.values()] == [2, 2, 3, 3]  # 36 runs
    assert grid.data.val_size == 10000 and grid.model.optimizer._target_ == "torch.optim.RMSprop"


def run_multirun(tmp_path, archive, *overrides):
    small = ["data.vocab_size=64", "data.batch_size=16", "trainer.accelerator=cpu"]
    where = [
        f"data.archive={archive}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    return run_train_py("-m", *small, *where, *overrides, cwd=ROOT)


@pytest.mark.slow
def test_two_job_multirun_with_a_failing_job(tmp_path, tiny_archive):
    # the second job fails (bad setting) but the sweep goes on and reports it
    result = run_multirun(
        tmp_path,
        tiny_archive,
        "model=mlp",
        "trainer.max_epochs=2",
        "data.ngrams=1",
        "model.optimizer.lr=0.01",
        "data.max_len=null,-5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["completed", "failed"]
    assert rows[0]["job"] == "0" and float(rows[0]["val/acc_best"]) > 0.5
    assert 0 < float(rows[0]["epoch_seconds"]) < float(rows[0]["fit_seconds"])
    assert rows[1]["epoch_seconds"] == ""  # the failed job has no metrics
    assert "data.max_len=-5" in rows[1]["overrides"]
    assert json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())["error"].startswith(
        "data.max_len=-5"
    )
    assert rows[1]["error"] == "data.max_len=-5 must be a positive integer or null (no limit)"
    assert rows[0]["error"] == ""
    assert (tmp_path / "sweep" / "summary.png").read_bytes()[:4] == b"\x89PNG"
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "| job |" in summary and "| failed | data.max_len=-5 must be" in summary
    # a setting error is one line in the job's log, not a traceback
    job_log = (tmp_path / "sweep" / "1" / "train.log").read_text()
    assert "Job failed: data.max_len=-5 must be" in job_log and "Traceback" not in job_log


def test_report_sorts_best_first(tmp_path):
    for job, acc in (("0", 0.7), ("1", 0.9), ("2", None)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- model.net.hidden_units={job}\n")
        if acc is not None:
            (tmp_path / job / "metrics.json").write_text(
                json.dumps({"status": "completed", "val/acc_best": acc})
            )
    rows = write_report(tmp_path)
    assert [r["job"] for r in rows] == ["1", "0", "2"] and rows[2]["status"] == "failed"


def test_report_of_a_folder_without_jobs_writes_nothing(tmp_path, capsys):
    (tmp_path / "not_a_job").mkdir()
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(SystemExit) as exited:
            sweep_report_main([str(folder)])
        assert exited.value.code == 2 and "holds no Hydra jobs" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_job"]  # no summary files


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="the Optuna sweeper is an extra: pip install -e '.[sweep]'",
)
def test_optuna_sweep_two_trials(tmp_path, tiny_archive):
    result = run_multirun(
        tmp_path,
        tiny_archive,
        "hparams_search=lstm_optuna",
        "hydra.sweeper.n_trials=2",
        "debug=fdr",
        "data.max_len=40",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best_value" in (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert len(list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))) == 2


@pytest.mark.slow
def test_readme_multirun_with_default_dirs(tmp_path, tiny_archive):
    # exactly the README's sweep command (plus a fast dev run), from a fresh directory
    result = run_train_py(
        "-m", "model=lstm,bilstm,mlp", "debug=fdr", f"data.archive={tiny_archive}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = (tmp_path / "outputs" / "multirun").glob("*/*/summary.csv")
    assert [r["status"] for r in csv.DictReader(summary.open())] == ["completed"] * 3
    assert list((tmp_path / "data" / "cache").glob("*.npz"))  # data/ beside outputs/, in the cwd
