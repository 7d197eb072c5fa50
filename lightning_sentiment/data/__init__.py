"""IMDB data: reading, tokenization, vocabulary, batching and the DataModule."""

from lightning_sentiment.data.text import Tokenizer, Vocabulary, pad_sequences

__all__ = ["SentimentDataModule", "Tokenizer", "Vocabulary", "pad_sequences"]


def __getattr__(name: str):
    # Lazy: importing Lightning costs ~3 s, which prediction does not need.
    if name == "SentimentDataModule":
        from lightning_sentiment.data.datamodule import SentimentDataModule

        return SentimentDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
