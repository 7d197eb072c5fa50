"""User-facing errors: one line that says what was wrong and what to do."""


class SentimentError(Exception):
    """A problem the user can fix (bad data, bad setting, bad checkpoint).

    Entry points print only the message, without a traceback.
    """


class SettingError(SentimentError, ValueError):
    """A model or data setting outside its allowed values; a ValueError to Python callers."""


def check_choice(key: str, value, allowed) -> None:
    """Raise `key=value is not allowed: use a, b` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise SettingError(f"{key}={value} is not allowed: use {', '.join(map(str, allowed))}")


def find_user_error(err: BaseException | None) -> SentimentError | None:
    """The SentimentError behind `err`, also when Hydra's instantiate wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, SentimentError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
