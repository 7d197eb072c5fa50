"""LSTMClassifier's training terms beside the sentiment loss: next word, segments, review LSTM."""

import pytest
import torch
import torch.nn.functional as F

from lightning_sentiment.errors import SettingError
from lightning_sentiment.models import LSTMClassifier, SentimentClassifier
from lightning_sentiment.models.sequences import left_align
from tests.helpers import quiet_trainer


def test_next_word_loss_is_the_language_model_loss_of_the_forward_states():
    """next_word=1: every step with a next token in its row predicts it from the last
    layer's forward states; aux_loss is that mean loss times the weight. Evaluation
    neither computes it nor changes its logits."""
    torch.manual_seed(0)
    net = LSTMClassifier(12, 5, 6, pooling="max", next_word=1.0, next_word_weight=0.5)
    tokens = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 2, 9, 11]])  # pre-padded: 3 and 5 real tokens
    logits = net.train()(tokens)
    aligned, lengths = left_align(tokens)
    states = net.forward_layers[0](net.embedding(aligned))[0]  # no dropout set: the same states
    log_probs = net.next_word_head.log_prob(states[:, :-1].reshape(-1, 6)).view(2, 4, 12)
    targets = aligned[:, 1:]  # (2, 4)
    real = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)  # steps with a next token
    expected = -log_probs.gather(2, targets[:, :, None])[:, :, 0][real].mean() * 0.5
    torch.testing.assert_close(net.aux_loss, expected)
    net.aux_loss.backward()
    assert net.embedding.weight.grad.abs().sum() > 0  # it trains the LSTM's inputs too
    torch.manual_seed(0)
    plain = LSTMClassifier(12, 5, 6, pooling="max")  # the same weights but the next-word head
    torch.testing.assert_close(net.eval()(tokens), plain.eval()(tokens))
    assert net.aux_loss is None and logits.shape == (2,)


def _segmented_lstm_cfg(**options) -> dict:
    """A tiny segmented LSTM's config for SentimentClassifier, with `options` added."""
    return {
        "_target_": "lightning_sentiment.models.LSTMClassifier",
        "vocab_size": 12,
        "embed_dim": 4,
        "hidden_dim": 4,
        "pooling": "max_mean",
        "chunk": 3,
        **options,
    }


def test_next_word_loss_is_added_to_training_only_and_checked():
    net_cfg = _segmented_lstm_cfg(next_word=0.5)
    opt_cfg = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg)
    batch = (torch.randint(1, 12, (4, 9)), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    torch.manual_seed(1)
    total = module.train().training_step(batch, 0)
    aux = module.net.aux_loss
    torch.manual_seed(1)
    loss, _, _ = module.model_step(batch)  # the same draws: the sentiment loss alone
    torch.testing.assert_close(total, loss + aux)
    assert aux > 0
    # a frozen epoch with every step drawn and no dropout: train/aux_loss is the mean over its reviews
    frozen = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0}
    module = SentimentClassifier(net=net_cfg | {"next_word": 1.0}, optimizer=frozen)
    gen = torch.Generator().manual_seed(2)
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    batches = [(torch.randint(1, 12, (n, 9), generator=gen), labels[:n]) for n in (5, 3)]
    trainer = quiet_trainer(max_epochs=1, enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    module.train()
    per_batch = []
    for b in batches:
        module.model_step(b)
        per_batch.append(float(module.net.aux_loss) * len(b[1]))
    assert float(trainer.callback_metrics["train/aux_loss"]) == pytest.approx(sum(per_batch) / 8, rel=1e-5)
    assert module.history[0]["train/aux_loss"] == pytest.approx(sum(per_batch) / 8, rel=1e-5)
    for bad in (-0.1, 1.5):
        with pytest.raises(SettingError, match=f"model.net.next_word={bad} must lie in"):
            LSTMClassifier(12, 4, 4, next_word=bad)


def test_segment_logits_are_each_segment_read_as_a_review_of_its_own():
    """segment_loss: in training, every segment's logit is what the network gives that
    segment alone; evaluation neither computes them nor changes its logits."""
    torch.manual_seed(0)
    net = LSTMClassifier(50, 8, 8, pooling="max_mean", chunk=4, segment_loss=0.5).train()
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [0, 0, 0, 0, 0, 3, 4, 5, 6, 7]])
    net(tokens)
    logits, reviews = net.segment_logits
    assert reviews.tolist() == [0, 0, 0, 1, 1]  # 4 + 4 + 2 tokens, then 4 + 1
    segments = [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14], [3, 4, 5, 6], [7]]
    alone = torch.stack([net(torch.tensor([s]))[0] for s in segments])
    torch.testing.assert_close(logits, alone)
    torch.manual_seed(0)
    plain = LSTMClassifier(50, 8, 8, pooling="max_mean", chunk=4)
    torch.testing.assert_close(net.eval()(tokens), plain.eval()(tokens))
    assert net.segment_logits is None
    with pytest.raises(SettingError, match="segment_loss=0.5 needs segments: set model.net.chunk"):
        LSTMClassifier(50, 8, 8, pooling="max", segment_loss=0.5)
    with pytest.raises(SettingError, match="segment_loss=-1.0 must be >= 0"):
        LSTMClassifier(50, 8, 8, pooling="max", chunk=4, segment_loss=-1.0)


def test_segment_loss_is_added_to_the_training_loss_with_its_weight():
    net_cfg = _segmented_lstm_cfg(segment_loss=0.25)
    opt_cfg = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg).train()
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    batch = (torch.randint(1, 12, (4, 9)), labels)
    torch.manual_seed(1)
    total = module.training_step(batch, 0)
    torch.manual_seed(1)
    loss, _, _ = module.model_step(batch)  # the same draws: the review loss alone
    logits, reviews = module.net.segment_logits
    assert reviews.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    expected = 0.25 * F.binary_cross_entropy_with_logits(logits, labels[reviews])
    torch.testing.assert_close(total, loss + expected)
    # with model.loss=mse and label smoothing, segments are scored as the reviews are
    module = SentimentClassifier(net=net_cfg, optimizer=opt_cfg, loss="mse", label_smoothing=0.2).train()
    torch.manual_seed(1)
    total = module.training_step(batch, 0)
    torch.manual_seed(1)
    loss, _, _ = module.model_step(batch)
    logits, reviews = module.net.segment_logits
    targets = labels[reviews] * 0.8 + 0.1
    torch.testing.assert_close(total, loss + 0.25 * F.mse_loss(torch.sigmoid(logits), targets))


def test_review_lstm_reads_each_reviews_segments_in_order():
    """review_lstm: the head sees pooled features beside the review LSTM's state after
    the review's last segment, computed from its own segments only (padding, empty
    slots and other reviews aside); swapping two segments changes it, as pooling alone
    would not notice."""
    torch.manual_seed(0)
    net = LSTMClassifier(50, 8, 8, pooling="max_mean", chunk=4, review_lstm=5).eval()
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [0, 0, 0, 0, 0, 3, 4, 5, 6, 7]])
    features = net._features(*left_align(tokens))  # (2, 16 + 5)
    assert features.shape == (2, net.pool.size + 5)
    for row, segments in enumerate([[[5, 6, 7, 8], [9, 10, 11, 12], [13, 14]], [[3, 4, 5, 6], [7]]]):
        pooled = [net._features(*left_align(torch.tensor([s])))[:, : net.pool.size] for s in segments]
        alone = torch.cat(pooled)  # (k, F): each segment pooled as a review of its own
        state = net.review_lstm(alone[None])[0][0, -1]  # after the last segment
        torch.testing.assert_close(features[row, net.pool.size :], state)
    swapped = net._features(*left_align(torch.tensor([[9, 10, 11, 12, 5, 6, 7, 8, 13, 14]])))
    torch.testing.assert_close(swapped[0, : net.pool.size], features[0, : net.pool.size])  # pooling: same
    assert not torch.allclose(swapped[0, net.pool.size :], features[0, net.pool.size :])
    assert net(tokens).shape == (2,)
    with pytest.raises(SettingError, match="review_lstm=5 needs segments: set model.net.chunk"):
        LSTMClassifier(50, 8, 8, pooling="max", review_lstm=5)
    with pytest.raises(SettingError, match="review_lstm=-1 must be >= 0"):
        LSTMClassifier(50, 8, 8, pooling="max", chunk=4, review_lstm=-1)
    with pytest.raises(SettingError, match="review_lstm reads whole reviews, segment_loss single segments"):
        LSTMClassifier(50, 8, 8, pooling="max", chunk=4, review_lstm=5, segment_loss=0.5)
