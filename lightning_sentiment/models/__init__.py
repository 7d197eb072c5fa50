"""Networks (plain `nn.Module`s) and the LightningModule that trains them."""

from lightning_sentiment.models.lstm import LSTMClassifier
from lightning_sentiment.models.mlp import MultiHotMLP
from lightning_sentiment.models.module import SentimentClassifier

__all__ = ["LSTMClassifier", "MultiHotMLP", "SentimentClassifier"]
