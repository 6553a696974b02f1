"""Fault injection, for tests of crash recovery and preemption: the process kills itself, or
waits, at a named point.

``NANOMOE_FAULT=kill@N`` SIGKILLs the training process right after optimizer step N, before
that step's eval; ``NANOMOE_FAULT=kill-after-checkpoint@N`` right after the checkpoint of the
eval at step N is saved, before any callback hears of it. ``NANOMOE_FAULT=pause@N`` waits
where ``kill@N`` would kill, after printing one line (``fault: paused after step N``), until
the trainer's ``stop()`` says stop (a SIGTERM arrived) or 10 minutes pass: a scheduler's
signal then lands at a known step. Only this module reads the variable.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

PAUSE_MAX_S = 600.0


def inject_fault(point: str, step: int, until: Callable[[], bool] | None = None) -> None:
    """SIGKILL this process at ``point`` of ``step`` when NANOMOE_FAULT asks for it; at the
    ``kill`` point, wait there while ``pause@<step>`` is asked for and ``until()`` is false."""
    fault = os.environ.get("NANOMOE_FAULT")
    if fault == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "kill" and fault == f"pause@{step}" and until is not None:
        print(f"fault: paused after step {step}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + PAUSE_MAX_S
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
