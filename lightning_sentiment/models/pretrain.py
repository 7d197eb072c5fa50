"""Language-model pretraining of an LSTM on the training reviews alone (`lm_pretrain`).

Dai & Le (2015) start an LSTM classifier from a language model of the reviews; here the
language model reads only the training split the classifier trains on (no validation,
test or unlabeled reviews), as the classifier reads it: 50-token segments from a fresh
state, boundaries moved at random, with its dropouts. Its embedding and LSTM layers then
start the classifier; the next-word head is thrown away. The weights are cached beside
the data, keyed by the training ids, the starting weights, the dropouts and the epochs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from lightning_sentiment.atomic import atomic_path
from lightning_sentiment.data.batching import BucketBatchSampler, PadCollate
from lightning_sentiment.models.auxiliary import NextWordHead
from lightning_sentiment.models.sequences import left_align, split_segments

log = logging.getLogger(__name__)
CACHE_VERSION = 1
BATCH_REVIEWS, LR, CLIP = 64, 1e-3, 1.0  # the classifier's batch, Adam rate and clipping
PRETRAINED = ("embedding.", "forward_layers.")  # what the language model gives the classifier


def _cache_path(net, dataset, epochs: int, seed: int, cache_dir: Path) -> Path:
    """Keyed by the reviews, the starting weights (sizes, seed, any init such as word2vec's),
    the dropouts the language model trains with, and the loop's settings."""
    key = dataset.content_hash()
    for name, value in sorted(_pretrained(net).items()):
        key.update(name.encode())
        key.update(value.detach().cpu().numpy().tobytes())
    dropouts = (net.chunk, net.word_dropout, net.dropout.p, net.recurrent_dropout, net.weight_dropout)
    key.update(f"{(CACHE_VERSION, epochs, seed, dropouts, BATCH_REVIEWS, LR, CLIP)}".encode())
    return Path(cache_dir) / f"lm-{key.hexdigest()[:16]}.pt"


def _pretrained(net) -> dict[str, torch.Tensor]:
    """The weights a language model gives the classifier: embedding and forward layers."""
    return {k: v for k, v in net.state_dict().items() if k.startswith(PRETRAINED)}


def lm_pretrain(net, dataset, epochs: int, cache_dir: Path | None = None, device=None) -> list[float]:
    """Train `net`'s embedding and forward LSTM layers as a next-word model of the reviews
    in `dataset` for `epochs` passes, in place; each epoch's mean loss ([]: from the
    cache). Its own seeded random stream: a run reads the cache or trains afresh and
    draws the same numbers after."""
    seed = torch.initial_seed() % 2**32  # the run's seed (seed_everything)
    path = None if cache_dir is None else _cache_path(net, dataset, epochs, seed, cache_dir)
    if path is not None and path.exists():
        try:
            net.load_state_dict(torch.load(path, weights_only=True), strict=False)
            return []
        except Exception as err:  # zipfile, torch and OS errors alike mean "damaged"
            log.warning("unreadable language-model cache %s (%s); training again", path, err)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        losses = _train(net, dataset, epochs, seed, device)
    log.info(
        "LM pretraining: %d epochs, next-word loss %s, %.1f s", epochs, losses, time.perf_counter() - start
    )
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(_pretrained(net), tmp)
    return losses


def _train(net, dataset, epochs: int, seed: int, device) -> list[float]:
    """The pretraining loop; returns each epoch's mean next-word loss."""
    hidden, vocab = net.forward_layers[-1].hidden_size, net.embedding.num_embeddings
    device = device or net.embedding.weight.device
    head = NextWordHead(hidden, vocab).to(device)
    net.to(device)
    params = [p for n, p in net.named_parameters() if n.startswith(PRETRAINED)]
    optimizer = torch.optim.Adam([*params, *head.parameters()], lr=LR)
    sampler = BucketBatchSampler(dataset.lengths(), BATCH_REVIEWS, shuffle=True, seed=seed)
    collate, losses, was_training = PadCollate("post"), [], net.training
    net.train()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        total, steps = torch.zeros((), device=device), 0
        for batch in sampler:
            tokens = collate(dataset.__getitems__(batch))[0].to(device)  # (B, T)
            loss = _segment_loss(net, head, *left_align(tokens))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params + list(head.parameters()), CLIP)
            optimizer.step()
            total, steps = total + loss.detach(), steps + 1  # on the device: no host sync a step
        losses.append(round(float(total) / max(steps, 1), 4))
        log.info("LM pretraining epoch %d: next-word loss %.4f", epoch + 1, losses[-1])
    net.train(was_training)
    return losses


def _segment_loss(net, head: NextWordHead, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Next-word loss of left-aligned reviews (B, T) read as the classifier reads them in
    training: segments of `chunk` with a random first boundary."""
    lengths = lengths.clamp(min=1)
    if net.chunk is not None:
        first = int(torch.randint(1, net.chunk + 1, ()))
        tokens, lengths = split_segments(tokens, lengths, net.chunk, first)[:2]  # (S, chunk), (S,)
    states = net._layers(net._embed(tokens, None), lengths)[0]  # (S, chunk, H)
    return head.sampled_loss(states, tokens, lengths, 1.0, net.dropout)
