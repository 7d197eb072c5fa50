"""model.net.lm_pretrain: the LSTM starts from a next-word model of the training reviews."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_sentiment.data.batching import EncodedReviews
from lightning_sentiment.errors import SettingError
from lightning_sentiment.models import LSTMClassifier, pretrain
from lightning_sentiment.pipeline import train

VOCAB, CYCLE = 60, 40


def cycle_reviews(n: int = 1500, length: int = 40, seed: int = 0) -> EncodedReviews:
    """Reviews that walk the ids 2..41 in order from a random start: every next word is
    known from the word before it, a language model's easiest text."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, CYCLE, n)
    ids = (2 + (starts[:, None] + np.arange(length)) % CYCLE).astype(np.int32).ravel()
    offsets = np.arange(n + 1) * length
    return EncodedReviews(ids, offsets, np.arange(n) % 2, np.arange(n), max_len=None, truncating="pre")


def net(**settings) -> LSTMClassifier:
    torch.manual_seed(3)
    return LSTMClassifier(VOCAB, 16, 16, pooling="max_mean", chunk=10, dropout=0.1, **settings)


def test_pretraining_learns_the_next_word_and_trains_only_embedding_and_layers():
    model = net(lm_pretrain=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    losses = pretrain.lm_pretrain(model, cycle_reviews(), 8)
    # nats; uniform over the 40 ids that occur would be 3.69: the cycle is being learned
    assert len(losses) == 8 and losses == sorted(losses, reverse=True) and losses[-1] < 3.0
    assert torch.equal(torch.get_rng_state(), rng)  # its own random stream: the run's is untouched
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if k.startswith(("embedding.", "forward_layers."))}
    assert not after["embedding.weight"][0].any()  # padding stays zero
    assert model.training  # left as it was found


def test_pretrained_weights_are_cached_and_a_damaged_cache_is_trained_again(tmp_path, monkeypatch, caplog):
    data, first = cycle_reviews(300), net()
    assert pretrain.lm_pretrain(first, data, 1, cache_dir=tmp_path)
    [cached] = tmp_path.glob("lm-*.pt")

    def no_training(*args):
        raise AssertionError("trained again")

    monkeypatch.setattr(pretrain, "_train", no_training)
    again = net()
    assert pretrain.lm_pretrain(again, data, 1, cache_dir=tmp_path) == []  # from the cache
    for key, value in first.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)
    assert {p.name for p in tmp_path.iterdir()} == {cached.name}  # nothing half-written beside it
    monkeypatch.undo()
    cached.write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING"):
        losses = pretrain.lm_pretrain(net(), data, 1, cache_dir=tmp_path)
    assert losses and "unreadable language-model cache" in caplog.text
    other_epochs = pretrain.lm_pretrain(net(), data, 2, cache_dir=tmp_path)
    assert len(other_epochs) == 2 and len(list(tmp_path.glob("lm-*.pt"))) == 2  # its own key
    keras = net(init="keras")  # another starting point (word2vec's would be one too)
    assert pretrain.lm_pretrain(keras, data, 1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("lm-*.pt"))) == 3


def test_lm_pretrain_settings_are_checked():
    with pytest.raises(
        SettingError, match=r"model.net.lm_pretrain=-1 must be an integer >= 0 \(epochs; 0: off\)"
    ):
        net(lm_pretrain=-1)
    with pytest.raises(
        SettingError, match="lm_pretrain trains a forward language model, for a one-direction"
    ):
        net(lm_pretrain=1, bidirectional=True)


def test_fit_to_data_pretrains_only_when_asked():
    plain = net()
    weights = {k: v.clone() for k, v in plain.state_dict().items()}
    plain.fit_to_data(cycle_reviews(100))
    for key, value in weights.items():
        torch.testing.assert_close(plain.state_dict()[key], value, rtol=0, atol=0)


def test_training_run_pretrains_once_and_caches(train_cfg, caplog):
    overrides = ["model=lstm", "model.net.lm_pretrain=1", "trainer.max_epochs=1", "test=false"]
    cfg = train_cfg(overrides)
    with caplog.at_level("INFO"):
        metrics = train(cfg)
    assert metrics["status"] == "completed"
    assert "LM pretraining: 1 epochs" in caplog.text
    assert len(list((Path(cfg.paths.data_dir) / "cache").glob("lm-*.pt"))) == 1
    caplog.clear()
    with caplog.at_level("INFO"):
        again = train(train_cfg(overrides))  # same data, seed and sizes: the cache
    assert "LM pretraining" not in caplog.text
    assert again["history"][0]["train/loss"] == metrics["history"][0]["train/loss"]
