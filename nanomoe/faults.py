"""Fault injection, for tests of crash recovery: the process kills itself at a named point.

``NANOMOE_FAULT=kill@N`` SIGKILLs the training process right after optimizer step N, before
that step's eval; ``NANOMOE_FAULT=kill-after-checkpoint@N`` right after the checkpoint of the
eval at step N is saved, before any callback hears of it. Only this module reads the variable.
"""

from __future__ import annotations

import os
import signal


def inject_fault(point: str, step: int) -> None:
    """SIGKILL this process at ``point`` of ``step`` when NANOMOE_FAULT asks for it."""
    if os.environ.get("NANOMOE_FAULT") == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)
