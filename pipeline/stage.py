"""What every command of the pipeline shares: one-line errors, exit codes, signals.

A failure the user can fix raises ``StageError`` (or ``ParamsError`` for a bad setting, or
the library's ``InputError`` for a bad input file) with a message that names the file or key
and the fix; ``run_stage`` prints it as
``error: <message>`` and exits 2, with no traceback. ``kill`` (SIGTERM) unwinds like Ctrl-C,
so open MLflow runs and Optuna trials are closed on the way out.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from nanomoe.config import InputError


class StageError(RuntimeError):
    """A failure the user can fix; the message says how."""


class ParamsError(StageError, ValueError):
    """A bad setting; the message names the key and how to fix it."""


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_stage(main: Callable[[list[str] | None], int | None]) -> None:
    """Call ``main``; turn expected failures into ``error: ...`` on stderr and exit 2."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = main(None)
    except (StageError, InputError, FloatingPointError) as err:  # incl. NonFiniteLossError
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
