"""SIGTERM while a cell trains: save a checkpoint at the current step, then exit 143.

A scheduler preempts a job (or ends it at its time limit) by sending SIGTERM and, KillWait
seconds later (30 s on SLURM by default), SIGKILL. Before training starts and after it ends,
SIGTERM unwinds like Ctrl-C (``stage.run_stage``): nothing is lost there. While the trainer's
loop runs, the handler only sets a flag; the trainer reads it after the step in flight,
saves a checkpoint of that whole step (atomically, the format of the periodic ones) and
raises ``Preempted``. The cell's next run resumes from it, bit for bit. A SIGKILL before the
save still resumes from the last periodic checkpoint.

The handler does not requeue anything: the SLURM task that runs the cell does
(``pipeline.cluster``), since only it knows it is one.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

EXIT_PREEMPTED = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM


class Preemption:
    """The SIGTERM flag a trainer asks after every step (``trainer.stop``)."""

    def __init__(self) -> None:
        self.requested = False
        self._armed = False

    def __call__(self) -> bool:
        return self.requested

    def _on_term(self, signum, frame) -> None:
        self.requested = True
        if not self._armed:  # not inside the training loop: unwind now, as Ctrl-C does
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def armed(self) -> Iterator[Preemption]:
        """While it lasts, SIGTERM asks the trainer to stop after its step; before and after,
        SIGTERM interrupts. A SIGTERM that came before the block interrupts at its start."""
        previous = signal.signal(signal.SIGTERM, self._on_term)
        self._armed = True
        try:
            yield self
        finally:
            self._armed = False
            signal.signal(signal.SIGTERM, previous)
