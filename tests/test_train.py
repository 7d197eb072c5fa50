import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_sentiment import hardware
from lightning_sentiment.pipeline import train
from tests.helpers import quiet_trainer, run_train_py

ROOT = Path(__file__).resolve().parents[1]


def run_and_check(cfg) -> dict:
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for key in ("test/acc", "test/loss", "val/acc_best", "best_model_path", "epochs", "fit_seconds"):
        assert key in saved, key
    assert 0.0 <= saved["test/acc"] <= 1.0 and saved["test/loss"] > 0 and saved["epochs"] >= 1
    ckpts = {p.name for p in (out / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in ckpts and Path(saved["best_model_path"]).name in ckpts
    assert Path(saved["best_model_path"]).name != "last.ckpt"
    # last.ckpt follows every epoch, also those without a new best (Lightning's save_last does not)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == saved["epochs"] - 1 and len(last["history"]) == saved["epochs"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    vocab = (out / "vocab.txt").read_text().split("\n")[:-1]
    assert vocab[:2] == ["<pad>", "<unk>"] and 20 < len(vocab) <= cfg.data.vocab_size  # 26 distinct words
    return saved


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lstm", "bilstm"])
def test_train_lstms_end_to_end(train_cfg, model):
    cfg = train_cfg(
        [f"model={model}", "trainer.max_epochs=2", "model.net.embed_dim=16", "model.net.hidden_dim=8"]
    )
    metrics = run_and_check(cfg)
    assert metrics["epochs"] == 2
    ckpt = torch.load(metrics["best_model_path"], map_location="cpu", weights_only=False)
    state = ckpt["SentimentDataModule"]
    assert state["vocab"]["words"][:2] == ["<pad>", "<unk>"] and state["preprocessing"]["max_len"] == 40
    assert ckpt["hyper_parameters"]["net"]["bidirectional"] == (model == "bilstm")


@pytest.mark.parametrize("model", ["lstm", "mlp"])
def test_cpu_bf16_trains_and_keeps_fp32_weights(train_cfg, model):
    cfg = train_cfg([f"model={model}", "trainer=cpu_bf16", "trainer.max_epochs=1"])
    metrics = run_and_check(cfg)
    state = torch.load(metrics["best_model_path"], weights_only=False)["state_dict"]
    # autocast computes in bf16; the weights, and so the checkpoint, stay fp32
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
    assert math.isfinite(metrics["test/loss"]) and metrics["test/loss"] < 5


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_it_warns_in_one_line(native, monkeypatch, caplog):
    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    with caplog.at_level(logging.WARNING, logger=hardware.__name__):
        hardware.warn_if_emulated_bf16(quiet_trainer(precision="bf16-mixed"))
        hardware.warn_if_emulated_bf16(quiet_trainer(precision="32-true"))
    warnings = [r.getMessage() for r in caplog.records]
    if native:
        assert warnings == []
    else:
        assert len(warnings) == 1 and "\n" not in warnings[0]
        assert "bf16-mixed" in warnings[0] and "trainer=cpu" in warnings[0]


@pytest.mark.slow
def test_train_mlp_learns_and_checkpoint_reevaluates(train_cfg, tmp_path):
    # 8 validation reviews tie at 100% early: select on val/loss so "best" is well defined
    cfg = train_cfg(
        [
            "model=mlp",
            "trainer.max_epochs=15",
            "model.optimizer.lr=0.01",
            "model.net.dropout=0.0",
            "data.ngrams=1",
            "callbacks.early_stopping.patience=20",
            "callbacks.model_checkpoint.monitor=val/loss",
            "callbacks.model_checkpoint.mode=min",
        ]
    )
    metrics = run_and_check(cfg)
    assert metrics["test/acc"] >= 0.9  # the tiny data is separable by its cue words
    assert metrics["val/acc_best"] >= 0.9
    weights = torch.load(metrics["best_model_path"], weights_only=False)["state_dict"]["net.feature_weight"]
    assert weights.shape == (cfg.data.vocab_size,) and weights[2:].abs().max() > 0.5  # fitted, saved
    again = train_cfg(["model=mlp", "train=false", f"ckpt_path={metrics['best_model_path']}"])
    with open_dict_cfg(again) as c:
        c.paths.output_dir = str(tmp_path / "eval")
    evaluated = train(again)
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_untested_run_still_leaves_its_curves(train_cfg):
    """test=false (tuning runs, sweeps): curves.png and metrics.json, no test-set files."""
    cfg = train_cfg(["model=mlp", "trainer.max_epochs=2", "test=false", "data.ngrams=1"])
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert "test/acc" not in metrics and len(metrics["history"]) == 2
    assert (out / "curves.png").stat().st_size > 1000
    # each epoch's own time (training, validation, checkpoints), without fit's setup
    seconds = [row["seconds"] for row in metrics["history"]]
    assert all(s > 0 for s in seconds) and sum(seconds) < metrics["fit_seconds"]
    assert metrics["epoch_seconds"] == pytest.approx(sum(seconds) / 2, abs=1e-3)  # median of two
    assert not (out / "confusion_matrix.png").exists() and not (out / "test_predictions.csv").exists()


def open_dict_cfg(cfg):
    from omegaconf import open_dict

    return open_dict(cfg)


def test_fast_dev_run_without_callbacks_or_logger(train_cfg):
    cfg = train_cfg(["model=bilstm", "debug=fdr", "callbacks=none", "logger=none"])
    metrics = train(cfg)
    assert metrics["best_model_path"] is None and 0 <= metrics["test/acc"] <= 1


@pytest.mark.slow
def test_cli_run_writes_run_dir(tmp_path, tiny_archive):
    result = run_train_py(
        "model=mlp",
        "trainer.max_epochs=1",
        "data.vocab_size=64",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"data.archive={tiny_archive}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / ".hydra" / "config.yaml").exists() and (run / "metrics.json").exists()
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1


def test_cli_missing_data_is_one_clear_line(tmp_path):
    missing = tmp_path / "nope.tar.gz"
    result = run_train_py(f"data.archive={missing}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: data.archive={missing} does not exist: point it at aclImdb_v1.tar.gz "
        "or leave it unset to download the dataset"
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.net.pooling=median"], "error: model.net.pooling=median is not allowed: use last, max"),
        (
            ["model=mlp", "model.adversarial_eps=1"],
            "error: model.adversarial_eps needs a network with a word",
        ),
        # checked by torch and Lightning, reported by settings_of; the seed by train(cfg)
        (["model.optimizer.lr=-1"], "error: model.optimizer: Invalid learning rate: -1 (check the"),
        (["trainer.max_epochs=-2"], "error: trainer: `max_epochs` must be a non-negative integer or -1"),
        (["seed=abc"], "error: seed=abc must be an integer from 0 to 4294967295, or null for no seeding"),
        (["seed=-1"], "error: seed=-1 must be an integer from 0 to 4294967295, or null"),  # was a traceback
        (["train=false"], "error: train=false evaluates a saved model: pass ckpt_path=PATH"),
        pytest.param(
            ["trainer=gpu"],
            "error: trainer.accelerator=gpu, but torch sees no GPU here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there"),
        ),
    ],
)
def test_cli_bad_setting_is_one_clear_line(tmp_path, tiny_archive, overrides, message):
    result = run_train_py(
        *overrides, f"data.archive={tiny_archive}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "InstantiationException" not in result.stderr


def test_lightning_pytree_deprecation_is_silenced():
    """torch 2.13 deprecates the LeafSpec that Lightning 2.6 builds for every batch's
    outputs; train.py's runs should not print that FutureWarning (the pipeline filters it).
    In a fresh interpreter, with Python's default warning filters, as a user runs it."""
    code = (
        "import lightning_sentiment.pipeline\n"
        "from pytorch_lightning.utilities._pytree import _tree_flatten\n"
        "_tree_flatten(1.0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LeafSpec" not in result.stderr


def test_lightnings_cloud_logger_advertisement_is_filtered(caplog):
    """Lightning 2.6 logs a tip to install its cloud logger at every Trainer's start; the
    pipeline's filter drops that line and no other."""
    import logging

    import pytorch_lightning as pl

    import lightning_sentiment.pipeline  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.INFO, logger="pytorch_lightning"):
        pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    messages = [r.getMessage() for r in caplog.records]
    assert any("GPU available" in m for m in messages), messages  # other lines still come through
    assert not any("litlogger" in m for m in messages), messages
