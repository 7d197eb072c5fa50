"""`SentimentDataModule`'s settings checked before any heavy work."""

from __future__ import annotations

from lightning_sentiment.errors import SentimentError, SettingError, check_choice, check_count

SPLIT_BY = ("review", "movie")
FLAGS = ("lowercase", "strip_html", "cache", "bucket", "distinct", "pin_memory")


def check_data_settings(settings: dict) -> None:
    """Fail before any heavy work, naming the `data` key and what it accepts.
    `settings`: the datamodule's arguments by name."""
    specials = 2 if settings["oov_token"] else 1
    vocab_size, max_len = settings["vocab_size"], settings["max_len"]
    if not isinstance(vocab_size, int) or vocab_size <= specials:
        raise SentimentError(
            f"data.vocab_size={vocab_size} must be an integer > {specials} "
            f"(ids 0..{specials - 1} are reserved)"
        )
    if max_len is not None and (not isinstance(max_len, int) or max_len <= 0):
        raise SentimentError(f"data.max_len={max_len} must be a positive integer or null (no limit)")
    choices = (
        ("padding", ("pre", "post")),
        ("truncating", ("pre", "post")),
        ("split", ("official", "random")),
        ("split_by", SPLIT_BY),
    )
    for key, allowed in choices:
        check_choice(f"data.{key}", settings[key], allowed)
    for key in ("val_size", "test_size"):
        _check_size(key, settings[key])
    check_count("data.batch_size", settings["batch_size"])
    check_count("data.eval_batch_size", settings["eval_batch_size"])
    check_count("data.num_workers", settings["num_workers"], minimum=0)  # 0: batches built in this process
    check_count("data.ngram_min_count", settings["ngram_min_count"])
    for key in FLAGS:
        if not isinstance(settings[key], bool):  # "maybe" would read as true
            raise SettingError(f"data.{key}={settings[key]} must be true or false")
    if settings["ngrams"] not in (1, 2):
        raise SentimentError(
            f"data.ngrams={settings['ngrams']} is not allowed: use 1 (words) or 2 (words and bigrams)"
        )


def _check_size(key: str, value) -> None:
    """A split's size: a fraction in (0, 1) or a count >= 1; val_size also 0 (no validation
    split: a final fit on every training review)."""
    if key == "val_size" and not isinstance(value, bool) and value == 0:
        return
    is_fraction = isinstance(value, float) and 0 < value < 1
    is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not (is_fraction or is_count):
        zero = "0 (no validation), " if key == "val_size" else ""
        raise SentimentError(f"data.{key}={value} must be {zero}a fraction in (0, 1) or a count >= 1")
