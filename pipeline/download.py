"""Stage ``download``: fetch ``data.url`` to data/raw/input.txt, checksum-verified.

NANOMOE_DATA_URL overrides the URL with another http(s) URL, a file:// URL or a local path
(a mirror, an offline copy). The checksum still applies, so DVC's cache stays truthful.
Nothing is written unless the new corpus is valid: not empty, the checksum, UTF-8.
"""

from __future__ import annotations

import argparse
import hashlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from nanomoe.atomic import atomic_write_bytes
from nanomoe.config import display_path
from pipeline.layout import Layout
from pipeline.params import DATA_URL_ENV, load_params
from pipeline.stage import StageError, run_stage


def restore_hint(out: str | Path) -> str:
    """How to get the last good corpus back: DVC deletes a stage's outs before running it,
    so after a failed ``dvc repro`` the file is gone from the workspace but still cached."""
    return f"Nothing written; after a failed dvc repro, `dvc checkout download` restores {out}"


def fetch(url: str, timeout: float = 60.0) -> bytes:
    """The bytes at an http(s) URL, a file:// URL or a local path."""
    parsed = urllib.parse.urlparse(url)
    try:
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.read()
        if parsed.scheme == "file":
            return Path(urllib.request.url2pathname(parsed.path)).read_bytes()
        if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive)
            return Path(url).expanduser().read_bytes()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None)
        raise StageError(
            f"{url}: cannot fetch it ({reason or err.__class__.__name__}); set data.url or "
            f"{DATA_URL_ENV} to a reachable mirror, a file:// URL or a local path"
        ) from None
    raise StageError(
        f"{url}: unsupported URL scheme {parsed.scheme!r}; set data.url or {DATA_URL_ENV} to "
        "an http(s) URL, a file:// URL or a local path"
    )


def download(url: str, sha256: str | None, out: Path) -> str:
    """Fetch, check, write atomically; return the content's sha256. Nothing is written
    unless the new corpus passes every check: not empty, the checksum (unless
    ``sha256`` is None), UTF-8 text."""
    hint = restore_hint(display_path(out))
    try:
        data = fetch(url)
    except StageError as err:
        raise StageError(f"{err}. {hint}") from None
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        raise StageError(
            f"{url}: is empty (0 bytes), not a corpus; point data.url or {DATA_URL_ENV} at "
            f"the corpus. {hint}"
        )
    if sha256 is not None and digest != sha256:
        raise StageError(
            f"{url}: sha256 is {digest}, data.sha256 expects {sha256}; fix the mirror, or set "
            f"data.sha256 to the new corpus's hash. {hint}"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StageError(
            f"{url}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
            f"convert the corpus to UTF-8. {hint}"
        ) from None
    atomic_write_bytes(out, data)
    return digest


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m pipeline.download", description=__doc__).parse_args(
        argv
    )
    layout = Layout.load()
    p = load_params(layout.root / "params.yaml")
    url = p.data.effective_url
    digest = download(url, p.data.sha256, layout.raw)
    check = "verified" if p.data.sha256 else "not checked (data.sha256 is null)"
    print(f"downloaded {url} -> {layout.relative(layout.raw)} (sha256 {digest}, {check})")
    return 0


if __name__ == "__main__":
    run_stage(main)
