"""What every stage's ``main`` shares: a clean one-line error and a non-zero exit."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


class StageError(RuntimeError):
    """A failure the user can fix; the message says how."""


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(main: Callable[[list[str] | None], int | None]) -> None:
    """Call ``main``; turn expected failures into ``error: ...`` on stderr and exit 2."""
    from pipeline.params import ParamsError

    signal.signal(signal.SIGTERM, _interrupt)  # `kill`: unwind like Ctrl-C, closing MLflow runs
    try:
        code = main(None)
    except (StageError, ParamsError, FloatingPointError) as err:  # incl. NonFiniteLossError
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
