"""Why a training run stops before ``max_iters``: a loss that is no longer finite, or a stop
asked for from outside (a scheduler's SIGTERM before it preempts the job).

A stop from outside is a question the trainer asks after every optimizer step (``stop()``,
a plain callable: a signal handler sets a flag, the trainer reads it), never a signal that
unwinds the loop at an arbitrary line: so the checkpoint it saves is of a whole step, and the
run resumed from it replays the uninterrupted one bit for bit.
"""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training loss became {loss} at step {step}; lower learning_rate")
        self.step = step


class Preempted(KeyboardInterrupt):
    """Training stopped at ``step`` because ``stop()`` asked, after saving a checkpoint there
    (when the trainer has a checkpoint path). An interruption: code that closes runs on
    Ctrl-C closes them the same way here."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}, as asked")
        self.step = step
