"""Stage ``download``: fetch each shard of ``data.url`` into data/raw/, checksum-verified.

Each shard streams to a temporary file beside its place, checked on the way: not empty, its
sha256 (unless data.sha256 is null), and UTF-8 text for .txt and .jsonl shards (after gunzip
for .gz). It takes its name only when every check passes, so a failed or cut-off shard never
sits in data/raw/ looking valid; the shards fetched before it stay, each verified. A shard
already there with the right checksum is not fetched again: data/raw/ is ``persist: true`` in
dvc.yaml, so DVC does not delete it before this stage runs. When every shard is in place,
files no longer in data.url are removed.

NANOMOE_DATA_URL overrides the URLs (see pipeline/sources.py); the checksums still apply.
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from nanomoe.atomic import atomic_writer
from nanomoe.config import display_path
from pipeline.project import Project
from pipeline.sources import DATA_URL_ENV, Shard, local_path
from pipeline.stage import StageError, run_stage

BLOCK = 1 << 20  # bytes per read


@contextmanager
def open_url(url: str, timeout: float = 60.0) -> Iterator[tuple[BinaryIO, int | None]]:
    """(a binary stream of the bytes at an http(s) URL, a file:// URL or a local path, its
    size in bytes or None when the server does not say)."""
    path = local_path(url)
    scheme = urllib.parse.urlparse(url).scheme
    if path is None and scheme not in ("http", "https"):
        raise StageError(
            f"{url}: unsupported URL scheme {scheme!r}; set data.url or {DATA_URL_ENV} to "
            "an http(s) URL, a file:// URL or a local path"
        )
    try:
        if path is not None:
            stream, size = open(path, "rb"), path.stat().st_size
        else:
            stream = urllib.request.urlopen(url, timeout=timeout)
            length = stream.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise _unreachable(url, err) from None
    with stream:
        yield stream, size


def _unreachable(url: str, err: Exception) -> StageError:
    reason = getattr(err, "reason", None) or getattr(err, "strerror", None)
    return StageError(
        f"{url}: cannot fetch it ({reason or err.__class__.__name__}); set data.url or "
        f"{DATA_URL_ENV} to a reachable mirror, a file:// URL or a local path"
    )


class Utf8Check:
    """UTF-8 validity of a stream fed in blocks (gunzipped first for a .gz shard)."""

    def __init__(self, gzipped: bool) -> None:
        self._gunzip = zlib.decompressobj(wbits=47) if gzipped else None
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.offset = 0  # bytes of text checked so far

    def feed(self, block: bytes, final: bool = False) -> None:
        try:
            if self._gunzip is not None:
                block = self._gunzip.decompress(block) + (self._gunzip.flush() if final else b"")
            self._utf8.decode(block, final)
        except zlib.error:
            raise ValueError("not a readable gzip file") from None
        except UnicodeDecodeError as err:
            at = self.offset + err.start
            raise ValueError(
                f"not UTF-8 text (byte {block[err.start]:#04x} at offset {at})"
            ) from None
        self.offset += len(block)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def _read(src: BinaryIO, url: str) -> bytes:
    try:
        return src.read(BLOCK)
    except (urllib.error.URLError, OSError) as err:  # the connection broke off
        raise _unreachable(url, err) from None


def _copy(src: BinaryIO, dst: BinaryIO, shard: Shard, bar: tqdm) -> str:
    """Stream ``src`` to ``dst``, checking as it goes; return the sha256. A failed check
    raises a StageError (and the caller's atomic writer drops what was written)."""
    h, size = hashlib.sha256(), 0
    text = Utf8Check(shard.gzipped) if shard.format in ("txt", "jsonl") else None
    try:
        while block := _read(src, shard.url):
            h.update(block)
            size += len(block)
            if text is not None:
                text.feed(block)
            dst.write(block)
            bar.update(len(block))
        if text is not None:
            text.feed(b"", final=True)
    except ValueError as err:
        fix = "convert the shard to UTF-8, or drop it from data.url"
        raise StageError(f"{shard.url}: {err}; {fix}") from None
    digest = h.hexdigest()
    if not size:
        raise StageError(
            f"{shard.url}: is empty (0 bytes), not a corpus; point data.url or {DATA_URL_ENV} at "
            "the corpus"
        )
    if shard.sha256 is not None and digest != shard.sha256:
        raise StageError(
            f"{shard.url}: sha256 is {digest}, data.sha256 expects {shard.sha256}; fix the "
            "mirror, or set data.sha256 to the new corpus's hash"
        )
    return digest


def download(shards: list[Shard], out: Path) -> list[tuple[Shard, str, bool]]:
    """Fetch every shard into ``out``; (shard, sha256, fetched) for each. A shard already
    there with its checksum is kept. Files of ``out`` that are no shard are removed last."""
    done = []
    with tqdm(unit="B", unit_scale=True, desc="download", disable=None) as bar:
        for shard in shards:
            dest = out / shard.name
            if shard.sha256 is not None and dest.is_file() and sha256_of(dest) == shard.sha256:
                done.append((shard, shard.sha256, False))
                continue
            with open_url(shard.url) as (src, size), atomic_writer(dest) as dst:
                bar.total = (bar.total or 0) + (size or 0)
                done.append((shard, _copy(src, dst, shard, bar), True))
    keep = {s.name for s in shards}
    for stale in out.iterdir():
        if stale.name not in keep and stale.is_file():
            stale.unlink()
    return done


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m pipeline.download", description=__doc__).parse_args(
        argv
    )
    project = Project.load()
    shards = project.params.data.shards()
    for shard, digest, fetched in download(shards, project.layout.raw):
        how = "downloaded" if fetched else "already there:"
        check = "verified" if shard.sha256 else "not checked (data.sha256 is null)"
        dest = display_path(project.layout.raw / shard.name)
        print(f"{how} {shard.url} -> {dest} (sha256 {digest}, {check})")
    return 0


if __name__ == "__main__":
    run_stage(main)
