import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_sentiment import SentimentError
from lightning_sentiment.data.imdb import read_reviews
from lightning_sentiment.pipeline import train
from lightning_sentiment.predict import SentimentPredictor, main
from tests.conftest import compose_train_cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_archive):
    """A short LSTM run on the tiny archive: (metrics, run dir)."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = compose_train_cfg(
        tmp,
        tiny_archive,
        ["model=bilstm", "trainer.max_epochs=3", "model.net.embed_dim=16", "model.net.hidden_dim=8"],
    )
    metrics = train(cfg)
    return metrics, Path(cfg.paths.output_dir)


def test_predictions_match_the_lightning_module(trained, tiny_archive):
    metrics = trained[0]
    predictor = SentimentPredictor(metrics["best_model_path"])
    texts = read_reviews(tiny_archive).texts[:12]
    preds = predictor.predict(texts)
    for text, pred in zip(texts, preds, strict=True):
        ids, _, _ = predictor.encode(text)
        with torch.no_grad():
            p = torch.sigmoid(predictor.net(torch.from_numpy(ids)[None]))[0].item()
        assert pred.p_positive == pytest.approx(round(p, 4), abs=1e-4)
        assert pred.label == ("positive" if p >= 0.5 else "negative")
        assert 0 < pred.known_tokens <= pred.tokens and pred.note == ""


def test_report_files_are_consistent(trained):
    metrics, run = trained[:2]
    matrix = np.array(metrics["test/confusion"])
    assert matrix.sum() == 80 and np.trace(matrix) / 80 == pytest.approx(metrics["test/acc"])
    rows = list(csv.DictReader(io.StringIO((run / "test_predictions.csv").read_text())))
    assert len(rows) == 80 and {r["review"].split("/")[0] for r in rows} == {"test"}
    correct = sum((float(r["p_positive"]) >= 0.5) == (r["label"] == "1") for r in rows)
    assert correct / 80 == pytest.approx(metrics["test/acc"])
    errors = (run / "errors.md").read_text()
    assert errors.startswith(f"# The {min(20, 80 - np.trace(matrix))} most confidently wrong")
    stats = json.loads((run / "data_stats.json").read_text())
    assert stats["splits"]["test"]["reviews"] == 80 and stats["splits"]["test"]["oov_rate"] > 0
    assert stats["splits"]["train"]["oov_rate"] == 0  # every training word fits the vocabulary
    # the curves cover every epoch, not just those up to the best checkpoint used for testing
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3]
    assert all(0 <= row[k] <= 1 for row in metrics["history"] for k in ("train/acc", "val/acc"))
    for picture in ("curves.png", "confusion_matrix.png"):
        assert (run / picture).read_bytes()[:4] == b"\x89PNG"


def run_cli(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_texts_json_file_and_stdin(trained, capsys, monkeypatch, tmp_path):
    ckpt = trained[0]["best_model_path"]
    code, out, _ = run_cli(capsys, ckpt, "a wonderful brilliant film", "awful boring worst")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].split()[0] in ("positive", "negative") and "wonderful" in lines[0]
    assert float(lines[0].split()[1]) == pytest.approx(
        SentimentPredictor(ckpt).predict(["a wonderful brilliant film"])[0].p_positive
    )
    code, out, _ = run_cli(capsys, ckpt, "great film", "", "qwerty asdf", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[1]["label"] is None and records[1]["note"] == "empty review"
    assert records[2]["note"] == "no known words" and records[2]["known_tokens"] == 0
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great film\nawful film\n")
    _, from_file, _ = run_cli(capsys, ckpt, "--file", reviews)
    _, from_stdin, _ = run_cli(capsys, ckpt, stdin="great film\nawful film\n", monkeypatch=monkeypatch)
    assert from_file == from_stdin and len(from_file.splitlines()) == 2


def test_cli_bad_files(trained, capsys, tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, other)
    cases = {
        tmp_path / "missing.ckpt": "does not exist",
        junk: "not a readable checkpoint",
        other: "another kind",
    }
    for path, message in cases.items():
        code, out, err = run_cli(capsys, path, "text")
        assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, trained[0]["best_model_path"], "--file", tmp_path / "nope.txt")
    assert code == 2 and "does not exist" in err
    with pytest.raises(SentimentError, match="another kind"):
        SentimentPredictor(other)


def test_prediction_tokenizes_as_training_did(tmp_path, tiny_archive):
    """data.split_chars travels in the checkpoint: prediction makes the same tokens."""
    cfg = compose_train_cfg(
        tmp_path, tiny_archive, ["model=mlp", "trainer.max_epochs=1", "data.split_chars='!'"]
    )
    predictor = SentimentPredictor(train(cfg)["best_model_path"])
    assert predictor.tokenizer.tokenize("Great!") == ["great", "!"]
    assert predictor.predict(["Great!"])[0].tokens == 2
    # with bigrams in the vocabulary, known_tokens still counts words, not bigrams too
    assert predictor.ngrams == 2 and any(" " in w for w in predictor.vocab.words)
    for pred in predictor.predict(read_reviews(tiny_archive).texts[:12]):
        assert 0 < pred.known_tokens <= pred.tokens


def test_predict_wants_a_list_of_strings(trained):
    predictor = SentimentPredictor(trained[0]["best_model_path"])
    with pytest.raises(TypeError, match=r"not one string: predict\(\[text\]\)"):
        predictor.predict("a wonderful film")  # would have classified each character
    with pytest.raises(TypeError, match="review 1 is a NoneType, not a string"):
        predictor.predict(["fine", None])
    assert predictor.predict([]) == [] and len(predictor.predict(("a", "b"))) == 2


def test_cli_options_among_the_reviews_and_bad_options(trained, capsys):
    ckpt = trained[0]["best_model_path"]
    code, out, _ = run_cli(capsys, ckpt, "great film", "--json", "awful film", "--batch-size", "1")
    texts = [json.loads(line)["text"] for line in out.splitlines()]
    assert code == 0 and texts == ["great film", "awful film"]
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, ckpt, "--batch-size", "0", "great film")
    assert exited.value.code == 2 and "--batch-size: 0 is not an integer >= 1" in capsys.readouterr().err
    code, out, err = run_cli(capsys, ckpt, "great film", "--device", "tpu")
    assert code == 2 and out == "" and err.startswith("error: --device tpu: ") and len(err.splitlines()) == 1
