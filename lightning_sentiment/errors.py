"""User-facing errors: one line that says what was wrong and what to do."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import Iterator


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


def check_count(key: str, value, minimum: int = 1, also: str = "", maximum: int | None = None) -> None:
    """Raise `key=value must be an integer >= minimum[also]` (or `from minimum to maximum`)
    unless it is one (bools are not); `also` names what else the key takes (", or null")."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and value >= minimum and (maximum is None or value <= maximum):
        return
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    raise SettingError(f"{key}={value} must be an integer {bounds}{also}")


def first_line(err: BaseException) -> str:
    """An exception's message cut to one line, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def positive_int(value: str) -> int:
    """argparse type of a count >= 1 (`--batches 0` stops at the command line)."""
    if not value.lstrip("-").isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value} is not an integer >= 1")
    return int(value)


def check_share(key: str, value) -> None:
    """Raise `key=value must lie in [0, 1)` unless it is such a number (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise SettingError(f"{key}={value} must lie in [0, 1)")


_LOCATE = re.compile(r"Error locating target '([^']+)'")


@contextlib.contextmanager
def settings_of(key: str) -> Iterator[None]:
    """Build the `key` config group (`model`, `trainer`, ...) with its argument errors as
    one-line SettingErrors.

    torch and Lightning check their arguments themselves (a negative learning rate,
    `max_epochs=-2`) with a ValueError or Lightning's MisconfigurationException, which
    Hydra's instantiate wraps in a multi-line InstantiationException; an unknown
    `_target_` fails to import. Anything else keeps its traceback, a ValueError of our
    own code too (ours raise SettingErrors for settings; another one is a bug).
    """
    try:
        yield
    except Exception as err:
        if find_user_error(err) is not None:  # ours already: the entry points print it
            raise
        # imported here: this module stays free of torch, which the package's __init__
        # imports before train.py sets the memory options (memory.py)
        from pytorch_lightning.utilities.exceptions import MisconfigurationException

        cause = err
        while cause.__cause__ is not None:  # Hydra's InstantiationException wraps the original
            cause = cause.__cause__
        located = _LOCATE.search(str(err))
        if located and isinstance(cause, ImportError):
            raise SettingError(
                f"{key}: cannot import {located.group(1)}: check the _target_ of {key} (or a group under it)"
            ) from err
        if isinstance(cause, ValueError | MisconfigurationException) and _raised_by_library(cause):
            raise SettingError(f"{key}: {first_line(cause)} (check the {key}.* settings)") from err
        raise


_LIBRARIES = ("torch", "pytorch_lightning", "lightning_fabric")


def _raised_by_library(err: BaseException) -> bool:
    """Whether torch or Lightning raised `err` (its innermost frame lies in their code)."""
    tb, last = err.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    path = last.tb_frame.f_code.co_filename if last is not None else ""
    return any(f"{os.sep}{lib}{os.sep}" in path for lib in _LIBRARIES)
