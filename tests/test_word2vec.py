"""model.net.embed_init=word2vec: the LSTM's embedding starts from word2vec of the training reviews."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_sentiment.data.batching import EncodedReviews
from lightning_sentiment.errors import SettingError
from lightning_sentiment.models import LSTMClassifier, data_fit
from lightning_sentiment.models import word2vec as w2v
from lightning_sentiment.pipeline import train
from lightning_sentiment.predict import SentimentPredictor

VOCAB, DIM = 300, 16
TOPICS = (np.arange(2, 8), np.arange(8, 14))  # two groups of words that never share a review


def topic_reviews(n: int = 2000, length: int = 40, seed: int = 0) -> EncodedReviews:
    """Reviews of one topic's words among filler words 20..279; ids 280..299 never occur."""
    rng = np.random.default_rng(seed)
    reviews = []
    for i in range(n):
        words = rng.integers(20, 280, length)
        at = rng.choice(length, 8, replace=False)
        words[at] = rng.choice(TOPICS[i % 2], 8)
        reviews.append(words)
    ids = np.concatenate(reviews).astype(np.int32)
    offsets = np.arange(n + 1) * length
    return EncodedReviews(ids, offsets, np.arange(n) % 2, np.arange(n), max_len=None, truncating="pre")


def mean_cosine(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    unit = [vectors[i] / np.linalg.norm(vectors[i], axis=1, keepdims=True) for i in (a, b)]
    sims = unit[0] @ unit[1].T
    if a is b:
        sims = sims[~np.eye(len(a), dtype=bool)]
    return float(sims.mean())


def test_vectors_place_words_of_one_topic_together_and_repeat_exactly():
    data = topic_reviews()
    vectors, seen = w2v.word2vec_vectors(data, VOCAB, DIM, seed=3)
    assert vectors.shape == (VOCAB, DIM) and vectors.dtype == np.float32
    np.testing.assert_array_equal(
        seen,
        (np.arange(VOCAB) >= 2)
        & (np.arange(VOCAB) < 280)
        & ~((np.arange(VOCAB) >= 14) & (np.arange(VOCAB) < 20)),
    )
    assert not vectors[~seen].any()
    within = mean_cosine(vectors, TOPICS[0], TOPICS[0])
    across = mean_cosine(vectors, TOPICS[0], TOPICS[1])
    assert within > 0.9 and across < 0.6, (within, across)
    again, _ = w2v.word2vec_vectors(data, VOCAB, DIM, seed=3)
    np.testing.assert_array_equal(again, vectors)  # one worker, a stable word hash
    other, _ = w2v.word2vec_vectors(data, VOCAB, DIM, seed=4)
    assert not np.allclose(other, vectors)


def test_vectors_are_cached_and_a_damaged_cache_is_trained_again(tmp_path, monkeypatch, caplog):
    data = topic_reviews(n=100)
    vectors, seen = w2v.word2vec_vectors(data, VOCAB, DIM, seed=3, cache_dir=tmp_path)
    [path] = tmp_path.iterdir()  # one file, no temporary left behind
    assert path.name.startswith("word2vec-") and path.suffix == ".npz"

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("gensim.models.Word2Vec", no_training)
    cached, cached_seen = w2v.word2vec_vectors(data, VOCAB, DIM, seed=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(cached, vectors)
    np.testing.assert_array_equal(cached_seen, seen)
    # another seed, size or split is another file
    assert w2v.cache_key(data, VOCAB, DIM, 4) != w2v.cache_key(data, VOCAB, DIM, 3)
    assert w2v.cache_key(topic_reviews(n=99), VOCAB, DIM, 3) != w2v.cache_key(data, VOCAB, DIM, 3)
    monkeypatch.undo()
    path.write_bytes(b"not a zip")
    again, _ = w2v.word2vec_vectors(data, VOCAB, DIM, seed=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, vectors)
    assert "unreadable word2vec cache" in caplog.text


def test_lstm_embedding_takes_the_vectors_at_the_init_scale():
    data = topic_reviews()
    torch.manual_seed(5)
    net = LSTMClassifier(VOCAB, DIM, 8, pooling="max", embed_init="word2vec")
    before = net.embedding.weight.detach().clone()
    net.fit_to_data(data)
    after = net.embedding.weight.detach()
    vectors, seen = w2v.word2vec_vectors(data, VOCAB, DIM, seed=5)
    seen[0] = False
    np.testing.assert_array_equal((after != before).any(1).numpy(), seen)  # only seen ids change
    assert not after[0].any()  # padding
    # the directions of word2vec, the spread of torch's N(0, 1) init
    cosines = torch.nn.functional.cosine_similarity(after[seen], torch.from_numpy(vectors[seen]))
    assert cosines.min() > 0.9999
    assert float(after[seen].std()) == pytest.approx(float(before[1:].std()), rel=1e-3)
    assert abs(float(before[1:].std()) - 1.0) < 0.05

    plain = LSTMClassifier(VOCAB, DIM, 8, pooling="max")
    weights = plain.embedding.weight.detach().clone()
    plain.fit_to_data(data)
    torch.testing.assert_close(plain.embedding.weight, weights)  # the default: untouched


def test_unknown_embed_init_is_refused():
    with pytest.raises(SettingError, match="model.net.embed_init=glove is not allowed: use null, word2vec"):
        LSTMClassifier(VOCAB, DIM, 8, embed_init="glove")


def test_training_run_starts_from_word2vec_and_caches_it(train_cfg, caplog):
    cfg = train_cfg(["model=lstm", "model.net.embed_init=word2vec", "trainer.max_epochs=1", "test=false"])
    with caplog.at_level("INFO"):
        metrics = train(cfg)
    assert metrics["status"] == "completed"
    assert "word2vec:" in caplog.text and "(training reviews only)" in caplog.text
    assert "cached after" in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("gensim")]  # its progress lines stay out
    cached = list((Path(cfg.paths.data_dir) / "cache").glob("word2vec-*.npz"))
    assert len(cached) == 1
    vectors = np.load(cached[0])["vectors"]
    state = torch.load(Path(metrics["best_model_path"]), weights_only=False)["state_dict"]
    embedding = state["net.embedding.weight"].numpy()
    # one epoch of training moves the rows only a little from where word2vec put them
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    seen = np.load(cached[0])["seen"]
    seen[0] = False
    assert float((unit(embedding[seen]) * unit(vectors[seen])).sum(1).mean()) > 0.9
    # the checkpoint holds the trained embedding: prediction never runs word2vec again
    for path in cached:
        path.unlink()
    predictor = SentimentPredictor(metrics["best_model_path"])
    torch.testing.assert_close(predictor.net.embedding.weight, state["net.embedding.weight"])
    assert not list((Path(cfg.paths.data_dir) / "cache").glob("word2vec-*.npz"))
    [pred] = predictor.predict(["A wonderful film."])
    assert pred.label in ("positive", "negative") and 0.0 <= pred.p_positive <= 1.0


def test_a_resumed_run_takes_the_embedding_from_its_checkpoint(train_cfg, tmp_path, monkeypatch):
    settings = ["model=lstm", "model.net.embed_init=word2vec", "test=false"]
    first = train(train_cfg([*settings, "trainer.max_epochs=1"]))
    [cached] = tmp_path.glob("data/cache/word2vec-*.npz")
    cached.unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("word2vec trained again on resume")

    monkeypatch.setattr(w2v, "word2vec_vectors", no_training)
    monkeypatch.setattr("lightning_sentiment.models.lstm_setup.word2vec_vectors", no_training)
    metrics = train(train_cfg([*settings, "trainer.max_epochs=2", f"ckpt_path={first['best_model_path']}"]))
    assert metrics["status"] == "completed" and [row["epoch"] for row in metrics["history"]] == [1, 2]


def test_fast_dev_run_fits_word2vec_to_a_few_reviews_and_caches_nothing(train_cfg, caplog, monkeypatch):
    # a pipeline check in seconds, not minutes of word2vec over every training review
    monkeypatch.setattr(data_fit, "FAST_DEV_REVIEWS", 20)
    cfg = train_cfg(["model=lstm", "model.net.embed_init=word2vec", "debug=fdr"])
    with caplog.at_level("INFO"):
        assert train(cfg)["status"] == "completed"
    assert "on 20 training reviews" in caplog.text and "not cached" in caplog.text
    assert not list((Path(cfg.paths.data_dir) / "cache").glob("word2vec-*.npz"))
