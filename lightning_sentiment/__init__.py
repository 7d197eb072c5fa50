"""lightning-sentiment: IMDB sentiment classifiers with PyTorch Lightning and Hydra."""

from lightning_sentiment.errors import SentimentError

__all__ = ["SentimentError"]
__version__ = "0.1.0"
