"""Stage ``download``: fetch ``data.url`` to data/raw/input.txt, checksum-verified.

NANOMOE_DATA_URL overrides the URL with another http(s) URL, a file:// URL or a local path
(a mirror, an offline copy). The checksum still applies, so DVC's cache stays truthful.
Nothing is written unless the checksum matches.
"""

from __future__ import annotations

import argparse
import hashlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from nanomoe.atomic import atomic_write_bytes
from pipeline.layout import Layout
from pipeline.params import DATA_URL_ENV, load_params
from pipeline.stage import StageError, run_stage


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
        reason = getattr(err, "reason", None) or err.__class__.__name__
        raise StageError(
            f"cannot fetch {url} ({reason}); set {DATA_URL_ENV} to a reachable mirror, "
            "a file:// URL or a local path"
        ) from None
    raise StageError(
        f"unsupported URL scheme {parsed.scheme!r} in {url}; set {DATA_URL_ENV} to an "
        "http(s) URL, a file:// URL or a local path"
    )


def download(url: str, sha256: str | None, out: Path) -> str:
    """Fetch, verify, write atomically; return the content's sha256."""
    data = fetch(url)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise StageError(
            f"checksum mismatch for {url}: expected {sha256} (data.sha256), got {digest}; "
            "nothing written. Fix the mirror, or set data.sha256 to the new corpus's hash"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise StageError(f"{url} is not UTF-8 text; the corpus must be UTF-8") from None
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
