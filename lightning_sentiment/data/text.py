"""Tokenization, vocabulary and padding with the classic Keras semantics.

Keras' `Tokenizer` lowercases, maps every character of `filters` to a space and
splits on spaces (`split_chars`, not in Keras, makes characters such as "!" tokens of
their own instead); `pad_sequences` pads and truncates at the front ("pre") or the
back ("post"). The same functions serve training (a whole corpus at once) and
prediction (a few strings), so both see identical tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lightning_sentiment.errors import SettingError

# Keras' default `Tokenizer(filters=...)`: all ASCII punctuation but the apostrophe.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
PAD_TOKEN = "<pad>"
# Joins reviews into one string so normalization runs once over the corpus;
# it is neither whitespace nor a default filter, so it survives as its own token.
_SEPARATOR = "\x01"


class Tokenizer:
    """Keras-style word tokenizer working on UTF-8 bytes for speed.

    Bytes let `bytes.translate` replace punctuation in one C pass; ASCII bytes never
    occur inside multi-byte UTF-8 characters, so splitting bytes is safe.
    """

    def __init__(
        self,
        lowercase: bool = True,
        filters: str = KERAS_FILTERS,
        strip_html: bool = True,
        split_chars: str = "",
    ) -> None:
        filters = "" if filters is None else filters  # null: nothing filtered, as Keras' ""
        for key, chars in (("filters", filters), ("split_chars", split_chars)):
            if not isinstance(chars, str) or not chars.isascii():
                raise SettingError(f"data.{key}={chars!r} must be a string of ASCII characters")
        if any(c.isspace() for c in split_chars):
            raise SettingError(
                f"data.split_chars={split_chars!r} holds whitespace, which never makes a token"
            )
        self.lowercase = lowercase
        self.filters = filters
        self.strip_html = strip_html
        self.split_chars = split_chars
        # split_chars become tokens of their own even where filters would drop them
        raw = "".join(c for c in filters if c not in split_chars).encode()
        self._table = bytes.maketrans(raw, b" " * len(raw))
        self._spaced = [(c.encode(), f" {c} ".encode()) for c in dict.fromkeys(split_chars)]

    def settings(self) -> dict:
        settings = {"lowercase": self.lowercase, "filters": self.filters, "strip_html": self.strip_html}
        if self.split_chars:  # only when set: the default's cache key and checkpoints stay as they were
            settings["split_chars"] = self.split_chars
        return settings

    def _encode(self, text: str) -> bytes:
        """UTF-8 bytes, lowercased as `str.lower` would but for ASCII letters, which
        `_normalize` lowers on bytes: a C pass ~10x cheaper than `str.lower` (0.7 s for
        the 50k reviews, ~9 in 10 of which are ASCII). `str.lower` never yields A-Z."""
        if self.lowercase and not text.isascii():  # isascii: O(1) on a str
            text = text.lower()
        return text.encode("utf-8", errors="replace")

    def _normalize(self, data: bytes) -> bytes:
        if self.lowercase:
            data = data.lower()  # ASCII letters only; the rest was lowered in `_encode`
        if self.strip_html:
            data = data.replace(b"<br />", b" ").replace(b"<br/>", b" ").replace(b"<br>", b" ")
        for char, spaced in self._spaced:  # after <br />: its "/" is no token
            data = data.replace(char, spaced)
        return data.translate(self._table)

    def tokenize(self, text: str) -> list[str]:
        """Tokens of one review."""
        text = text.replace(_SEPARATOR, " ")  # as in `tokenize_corpus`
        return [w.decode() for w in self._normalize(self._encode(text)).split()]

    def tokenize_corpus(self, texts: Sequence[str]) -> list[list[bytes]]:
        """Tokens (as UTF-8 bytes) of many reviews; equal to `tokenize` on each."""
        if any(_SEPARATOR in t for t in texts):
            texts = [t.replace(_SEPARATOR, " ") for t in texts]
        separator = _SEPARATOR.encode()
        joined = self._normalize(separator.join(map(self._encode, texts)))
        return [chunk.split() for chunk in joined.split(separator)]


class Vocabulary:
    """Word <-> id table: id 0 is padding, id 1 the OOV token when there is one."""

    def __init__(self, words: Sequence[str], oov_token: str | None) -> None:
        self.oov_token = oov_token
        specials = [PAD_TOKEN] + ([oov_token] if oov_token else [])
        if list(words[: len(specials)]) != specials:
            words = specials + list(words)
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be unique")

    @property
    def oov_id(self) -> int | None:
        return 1 if self.oov_token else None

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self.words, self.oov_token) == (
            other.words,
            other.oov_token,
        )

    def unknown_id(self, token: str) -> int:
        """Id of a token not in the vocabulary: OOV, or -1 (dropped) without OOV, as Keras.

        Bigrams ("not good": tokens never hold spaces otherwise) are always dropped.
        """
        return -1 if self.oov_id is None or " " in token else self.oov_id

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of tokens, unknown ones mapped by `unknown_id`."""
        ids = [self.index[t] if t in self.index else self.unknown_id(t) for t in tokens]
        return np.array([i for i in ids if i != -1], dtype=np.int64)

    def state_dict(self) -> dict:
        return {"words": self.words, "oov_token": self.oov_token}

    @classmethod
    def from_state_dict(cls, state: dict) -> Vocabulary:
        return cls(state["words"], state["oov_token"])


def truncate(seq: np.ndarray, max_len: int | None, truncating: str) -> np.ndarray:
    """Keep `max_len` ids, dropping from the front ("pre") or the back ("post")."""
    if max_len is None or len(seq) <= max_len:
        return seq
    if max_len == 0:
        return seq[:0]
    return seq[-max_len:] if truncating == "pre" else seq[:max_len]


def pad_sequences(
    sequences: Sequence[np.ndarray],
    maxlen: int | None = None,
    padding: str = "pre",
    truncating: str = "pre",
    value: int = 0,
) -> np.ndarray:
    """Keras `pad_sequences`: a (N, maxlen) int64 array; maxlen defaults to the longest."""
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise ValueError("padding and truncating must be 'pre' or 'post'")
    if maxlen is None:
        maxlen = max((len(s) for s in sequences), default=0)
    out = np.full((len(sequences), maxlen), value, dtype=np.int64)
    for row, seq in zip(out, sequences, strict=True):
        seq = truncate(np.asarray(seq), maxlen, truncating)
        if len(seq) == 0:
            continue
        if padding == "post":
            row[: len(seq)] = seq
        else:
            row[maxlen - len(seq) :] = seq
    return out
