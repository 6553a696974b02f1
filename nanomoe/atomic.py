"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

The new file gets the permissions an ordinary file gets (``0o666`` less the umask), not the
``0o600`` of the temporary file it starts as. A failed write raises an OSError whose
``filename`` is the destination, never the temporary file's name, so the error names the
file the user knows; the old file is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    """The process's umask. Read from /proc where Linux offers it, so it is never changed;
    elsewhere set and restored at once (``os.umask`` only reads by writing)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[tuple[BinaryIO, str]]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to stream into; its bytes appear at ``path`` only when the block ends
    without an exception (any exception leaves the old file, and no temporary one)."""
    path, tmp = Path(path), None
    try:
        with _temporary(path) as (f, tmp):
            yield f
    except OSError as err:
        ours = err.filename is None or os.fspath(err.filename) in (tmp, os.fspath(path))
        if err.errno is None or not ours:  # another file's error (one the block read): as is
            raise
        # disk full, permission denied, a folder in the way: name the destination
        raise OSError(err.errno, err.strerror or str(err), os.fspath(path)) from err


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
