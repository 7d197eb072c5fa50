"""Networks (plain `nn.Module`s) and the LightningModule that trains them."""

from lightning_sentiment.models.lstm import LSTMClassifier
from lightning_sentiment.models.mlp import MultiHotMLP

__all__ = ["LSTMClassifier", "MultiHotMLP", "SentimentClassifier"]


def __getattr__(name: str):
    # Lazy: importing Lightning costs ~3 s, which prediction does not need.
    if name == "SentimentClassifier":
        from lightning_sentiment.models.module import SentimentClassifier

        return SentimentClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
