"""What every command of the pipeline shares: one-line errors, exit codes, signals.

A failure the user can fix raises ``StageError`` (or ``ParamsError`` for a bad setting, or
the library's ``InputError`` for a bad input file) with a message that names the file or key
and the fix; ``run_stage`` prints it as ``error: <message>`` and exits 2, with no traceback.
So does an OSError that names a file (disk full, permission denied, a folder in the way):
that is the machine, not a bug; one without a file name is a bug and keeps its traceback.
``kill`` (SIGTERM) unwinds like Ctrl-C, so open MLflow runs and Optuna trials are closed on
the way out.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable

from nanomoe.config import InputError, display_path


class StageError(RuntimeError):
    """A failure the user can fix; the message says how."""


class ParamsError(StageError, ValueError):
    """A bad setting; the message names the key and how to fix it."""


_FULL = "free disk space, then run it again"
_ACCESS = "check the permissions of the file and its folder, then run it again"
_OS_FIXES = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EACCES: _ACCESS,
    errno.EPERM: _ACCESS,
    errno.EROFS: "the file system is read-only; run where the project can be written",
    errno.EISDIR: "a folder is in the way of the file; move it away and run it again",
    errno.ENOTDIR: "a file is in the way of a folder on that path; move it away",
    errno.ENOENT: "it is missing; run the stage that writes it (dvc repro)",
}


def os_error_line(err: OSError) -> str:
    """``<file>: <what the OS said>; <fix>`` for an OSError that names a file."""
    fix = _OS_FIXES.get(err.errno, "check the path and the disk, then run it again")
    return f"{display_path(os.fsdecode(err.filename))}: {err.strerror or err}; {fix}"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _error(line: str) -> None:
    """Print ``error: line``: once, from rank 0, when torchrun runs several copies."""
    if os.environ.get("RANK", "0") == "0":
        print(f"error: {line}", file=sys.stderr)
    sys.exit(2)


def run_stage(main: Callable[[list[str] | None], int | None]) -> None:
    """Call ``main``; turn expected failures into ``error: ...`` on stderr and exit 2."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = main(None)
    except (StageError, InputError, FloatingPointError) as err:  # incl. NonFiniteLossError
        _error(str(err))
    except OSError as err:
        if err.filename is None:
            raise
        _error(os_error_line(err))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
