"""``data:``: where the corpus comes from, as a list of shards, each with its checksum.

``data.url`` is one URL or a list of them; each shard's format comes from its extension
(``FORMATS``). ``data.sha256`` is one checksum, a list of one per shard, or null (no check).
NANOMOE_DATA_URL overrides the URLs on one machine (a mirror, an offline copy): one URL or
path, several separated by whitespace, or a local folder, which stands for every shard file
in it in name order. The checksums of params.yaml still apply to whatever it names.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nanomoe.config import Config
from pipeline.stage import ParamsError

DATA_URL_ENV = "NANOMOE_DATA_URL"
# extension -> how its rows become documents: a text file is one document; a JSONL line or a
# Parquet row is one, read from data.text_field
FORMATS = {
    ".txt": "txt",
    ".txt.gz": "txt",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".parquet": "parquet",
}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Shard:
    url: str
    sha256: str | None  # None: not checked
    name: str  # its file name in data/raw/

    @property
    def format(self) -> str:
        return shard_format(self.name)

    @property
    def gzipped(self) -> bool:
        return is_gzipped(self.name)


def is_gzipped(name: str) -> bool:
    """Whether a shard named ``name`` is gzipped (``.gz``, in any case, as the format is)."""
    return name.lower().endswith(".gz")


def shard_format(name: str) -> str:
    """The format of a shard named ``name``, or a ValueError saying which names are known."""
    for ext in sorted(FORMATS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return FORMATS[ext]
    known = ", ".join(FORMATS)
    raise ValueError(f"{name}: unknown format; name each shard with one of {known}")


def shard_name(url: str) -> str:
    """The file name of the shard at ``url`` (its path's last part)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https", "file"):
        return urllib.parse.unquote(parsed.path.rstrip("/").rpartition("/")[2])
    return Path(url).name


def local_path(url: str) -> Path | None:
    """The local path a file:// URL or a plain path names; None for http(s)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive)
        return Path(url).expanduser()
    return None


def _folder_shards(folder: Path) -> list[str]:
    found = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            try:
                shard_format(p.name)
            except ValueError:
                continue
            found.append(str(p))
    if not found:
        raise ParamsError(
            f"{DATA_URL_ENV}: {folder} holds no shard ({', '.join(FORMATS)}); point it at the "
            "corpus's folder, a file, or several URLs separated by spaces"
        )
    return found


def _names(urls: list[str]) -> list[str]:
    names = [shard_name(u) for u in urls]
    for name in names:
        shard_format(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"two shards are named {repeated[0]}; each shard needs its own file name")
    return names


@dataclass(frozen=True)
class DataParams(Config):
    url: str | list[str]
    sha256: str | list[str | None] | None  # None: no check
    text_field: str = "text"  # the column (Parquet) or key (JSONL) holding each document
    val_fraction: float = 0.1
    max_val_tokens: int | None = None  # None: the whole validation split

    def __post_init__(self) -> None:
        super().__post_init__()
        urls = self.urls
        if not urls or not all(urls):
            raise ValueError("url: must be a URL or a non-empty list of URLs")
        try:
            _names(urls)
        except ValueError as err:
            raise ValueError(f"url: {err}") from None
        sums = self.sha256 if isinstance(self.sha256, list) else [self.sha256]
        if len(sums) != len(urls) and self.sha256 is not None:
            raise ValueError(
                f"sha256: {len(sums)} checksums for {len(urls)} shards in data.url; give one "
                "per shard, in the same order, or null to skip the check"
            )
        for s in sums:
            if s is not None and not _HEX64.fullmatch(s):
                raise ValueError("sha256: must be 64 hex digits, or null to skip the check")
        if self.sha256 is not None:  # as hashlib prints them
            low = [s.lower() if s else None for s in sums]
            object.__setattr__(self, "sha256", low if isinstance(self.sha256, list) else low[0])
        if not self.text_field:
            raise ValueError("text_field: must name the column or key holding the text")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError("val_fraction: must be in (0, 1)")
        if self.max_val_tokens is not None and self.max_val_tokens < 2:
            raise ValueError("max_val_tokens: must be >= 2, or null for the whole split")

    @property
    def urls(self) -> list[str]:
        return self.url if isinstance(self.url, list) else [self.url]

    @property
    def checksums(self) -> list[str | None]:
        if isinstance(self.sha256, list):
            return self.sha256
        return [self.sha256] * len(self.urls)

    @property
    def digest(self) -> str | None:
        """The corpus's sha256: a single shard's checksum, the sha256 of several shards'
        checksums (in order); None where data.sha256 leaves a shard unchecked."""
        if self.sha256 is None or None in self.checksums:
            return None
        if len(self.checksums) == 1:
            return self.checksums[0]
        return hashlib.sha256("\n".join(self.checksums).encode("ascii")).hexdigest()

    @property
    def fingerprint(self) -> str:
        """One string naming the corpus's bytes, for a run's tags: ``digest``, with the number
        of shards where there are several, or "unchecked"."""
        if self.digest is None:
            return "unchecked"
        n = len(self.checksums)
        return self.digest if n == 1 else f"{n} shards: {self.digest}"

    def shards(self) -> list[Shard]:
        """The shards to fetch: data.url's, or NANOMOE_DATA_URL's with data.sha256's sums."""
        override = os.environ.get(DATA_URL_ENV, "").split()
        if not override:
            urls = self.urls
            return [Shard(*s) for s in zip(urls, self.checksums, _names(urls), strict=True)]
        folder = local_path(override[0]) if len(override) == 1 else None
        urls = _folder_shards(folder) if folder is not None and folder.is_dir() else override
        if len(urls) != len(self.urls) and self.sha256 is not None:
            raise ParamsError(
                f"{DATA_URL_ENV}: names {len(urls)} shards, params.yaml's data.sha256 checks "
                f"{len(self.urls)}; give the same shards, or set data.sha256 to null"
            )
        try:
            names = _names(urls)
        except ValueError as err:
            raise ParamsError(f"{DATA_URL_ENV}: {err}") from None
        sums = self.checksums if self.sha256 is not None else [None] * len(urls)
        return [Shard(*s) for s in zip(urls, sums, names, strict=True)]
