"""Networks with statistics of the training data (the MLP's naive-Bayes weights, the LSTM's
word2vec embedding or language-model pretraining) fit them before training starts."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from lightning_sentiment.errors import SentimentError

# fast_dev_run checks the pipeline in seconds: networks fit to this many training reviews,
# uncached, instead of minutes of word2vec or pretraining over all of them
FAST_DEV_REVIEWS = 500


def fit_network_to_data(net: torch.nn.Module, trainer: pl.Trainer | None, stage: str, resuming: bool) -> None:
    """At the fit stage, `net.fit_to_data` on the datamodule's training split, on the device
    the network will train on; a resumed run skips it (its checkpoint restores them), and
    a fast_dev_run fits to the first FAST_DEV_REVIEWS reviews and caches nothing.
    Refuses, in one line, distinct-ids data for a network that reads order or counts."""
    datamodule = getattr(trainer, "datamodule", None)  # None without a trainer too
    if datamodule is None:
        return
    if datamodule.hparams.get("distinct") and not getattr(net, "reads_sets", False):
        raise SentimentError(
            f"data.distinct=true keeps only each review's distinct ids, and {type(net).__name__} "
            "needs word order or counts: set data.distinct=false"
        )
    if stage == "fit" and hasattr(net, "fit_to_data") and not resuming:
        reviews, cache_dir = datamodule.splits["train"], datamodule.cache_dir()
        if trainer.fast_dev_run:  # a check that the pipeline runs: no cache files of it
            reviews, cache_dir = reviews.head(FAST_DEV_REVIEWS), None
        device = trainer.strategy.root_device  # where the network will train
        net.fit_to_data(reviews, cache_dir=cache_dir, device=device)
