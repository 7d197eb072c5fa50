"""Find, download and read the IMDB Large Movie Review Dataset (Maas et al., 2011).

Sources, in order: an extracted `aclImdb/` folder in `data_dir`; an archive given
explicitly or lying in `data_dir`; the official archive, downloaded. Archives are
read in memory without extracting 50,000 small files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightning_sentiment.atomic import atomic_path
from lightning_sentiment.errors import SentimentError

log = logging.getLogger(__name__)

OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
OFFICIAL_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
OFFICIAL_SIZE = 84_125_825
ARCHIVE_NAMES = ("aclImdb_v1.tar.gz", "aclImdb_v1_labeled.tar.gz", "aclImdb.tar.gz")
_REVIEW = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_URLS = re.compile(r"(?:^|/)aclImdb/(train|test)/urls_(pos|neg)\.txt$")  # line i: the movie of review i
_ZERO_BLOCK = bytes(512)


@dataclass
class RawReviews:
    """All labeled reviews, sorted by (split, label, id) whatever the source order."""

    texts: list[str]
    labels: np.ndarray  # (N,) int8, 1 = positive
    is_test: np.ndarray  # (N,) bool, the official split
    ids: np.ndarray  # (N,) int32, the number in the file name
    ratings: np.ndarray  # (N,) int8, 1-10
    movies: np.ndarray  # (N,) int32, one id per IMDB title page; -1 where the urls files lack it
    n_invalid_utf8: int  # reviews decoded with replacement characters


def locate(data_dir: str | Path, archive: str | Path | None) -> Path | None:
    """The folder or archive to read, or None when the official archive must be fetched."""
    data_dir = Path(data_dir)
    if (data_dir / "aclImdb" / "train").is_dir():
        return data_dir / "aclImdb"
    if archive:
        path = Path(archive).expanduser()
        if not path.is_file():
            raise SentimentError(
                f"data.archive={archive} does not exist: point it at aclImdb_v1.tar.gz "
                "or leave it unset to download the dataset"
            )
        return path
    for name in ARCHIVE_NAMES:
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def download(url: str, dest: Path, sha256: str | None) -> Path:
    """Fetch `url` to `dest` with a progress bar; verified, and renamed only when complete."""
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp:  # an error below leaves no file under `dest`
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {dest.name}") as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (OSError, ValueError) as err:  # URLError and timeouts are OSErrors
            reason = getattr(err, "reason", None) or err
            raise SentimentError(
                f"could not download IMDB from {url} ({reason}); "
                "fetch it another way and pass data.archive=PATH"
            ) from None
        if sha256 and digest.hexdigest() != sha256:
            raise SentimentError(
                f"download from {url} has sha256 {digest.hexdigest()}, expected {sha256}: "
                "the file is incomplete or not the IMDB archive; try again or pass data.archive=PATH"
            )
    return dest


def read_reviews(source: Path) -> RawReviews:
    """Read every labeled review of a folder or a (gzipped) tar archive."""
    members = _iter_folder(source) if source.is_dir() else _iter_tar(_read_archive_bytes(source), source)
    rows, texts, n_invalid, urls = [], [], 0, {}
    for name, data in members:
        match = _REVIEW.search(name)
        if not match:
            if found := _URLS.search(name):
                urls[found.group(1) == "test", found.group(2) == "pos"] = data.decode(
                    "utf-8", "replace"
                ).split()
            continue  # README, vocab, unsup/ reviews
        split, label, review_id, rating = match.groups()
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(data.decode("utf-8", errors="replace"))
            n_invalid += 1
        rows.append((split == "test", label == "pos", int(review_id), int(rating)))
    if not rows:
        raise SentimentError(
            f"no reviews found in {source}: expected files aclImdb/{{train,test}}/{{pos,neg}}/"
            "<id>_<rating>.txt; pass data.archive=PATH to the IMDB archive"
        )
    table = np.array(rows, dtype=np.int64)  # (N, 4)
    order = np.lexsort((table[:, 2], table[:, 1], table[:, 0]))
    table = table[order]
    return RawReviews(
        texts=[texts[i] for i in order],
        labels=table[:, 1].astype(np.int8),
        is_test=table[:, 0].astype(bool),
        ids=table[:, 2].astype(np.int32),
        ratings=table[:, 3].astype(np.int8),
        movies=_movies(table, urls),
        n_invalid_utf8=n_invalid,
    )


def _movies(table: np.ndarray, urls: dict) -> np.ndarray:
    """Movie ids from urls_{pos,neg}.txt, whose line i names the movie of review i."""
    movies = np.full(len(table), -1, dtype=np.int32)
    ids: dict[str, int] = {}
    for (is_test, positive), lines in urls.items():
        line_movie = np.array([ids.setdefault(url, len(ids)) for url in lines], dtype=np.int32)
        rows = np.flatnonzero(
            (table[:, 0] == is_test) & (table[:, 1] == positive) & (table[:, 2] < len(lines))
        )
        movies[rows] = line_movie[table[rows, 2]]
    return movies


def _iter_folder(root: Path):
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            folder = root / split / label
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                with open(entry.path, "rb") as f:
                    yield f"aclImdb/{split}/{label}/{entry.name}", f.read()


def _read_archive_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data  # a plain .tar
    try:
        # One C call for the whole stream is ~4x faster than tarfile's streaming reader.
        return zlib.decompress(data, wbits=16 + zlib.MAX_WBITS)
    except zlib.error as err:
        raise SentimentError(
            f"archive {path} is corrupt or truncated ({err}): delete it and download it again"
        ) from None


def _iter_tar(data: bytes, path: Path):
    """(name, bytes) of the regular files of a tar held in memory (ustar, GNU and pax names)."""
    pos, next_name = 0, None
    while pos + 512 <= len(data):
        header = data[pos : pos + 512]
        if header == _ZERO_BLOCK:
            return
        if _checksum(header) != _number(header[148:156], path):
            raise SentimentError(f"archive {path} is corrupt (bad tar header at byte {pos})")
        size, kind = _number(header[124:136], path), header[156:157]
        start, pos = pos + 512, pos + 512 + (size + 511) // 512 * 512
        if start + size > len(data):
            break
        body = data[start : start + size]
        if kind == b"L":  # GNU long name of the next member
            next_name = body.rstrip(b"\0").decode("utf-8", "replace")
        elif kind == b"x":  # pax header; only its path matters here
            next_name = _pax_path(body) or next_name
        elif kind in (b"0", b"\0", b"7"):
            yield next_name or _header_name(header), body
            next_name = None
    raise SentimentError(f"archive {path} is truncated: delete it and download it again")


def _checksum(header: bytes) -> int:
    return sum(header[:148]) + 8 * ord(" ") + sum(header[156:])


def _number(field: bytes, path: Path) -> int:
    if field[0] & 0x80:  # GNU base-256 for large values
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.rstrip(b"\0 ").strip() or b"0", 8)
    except ValueError:
        raise SentimentError(f"archive {path} is corrupt (not a tar archive)") from None


def _header_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace")


def _pax_path(body: bytes) -> str | None:
    for record in body.decode("utf-8", "replace").splitlines():
        _, _, keyval = record.partition(" ")
        key, _, value = keyval.partition("=")
        if key == "path":
            return value
    return None
