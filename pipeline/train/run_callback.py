"""The trainer's metrics into an MLflow run: the one place the training loop meets MLflow.

It lives apart from ``tracking.py`` so that what only reads runs and writes summaries (the
report stage) never imports the trainer, and with it torch. It speaks to MLflow only through
``tracking.Run``.
"""

from __future__ import annotations

import sys

from nanomoe.moe import MoEStats
from nanomoe.trainer import Callback
from pipeline.tracking import Run, tracking_uri


class MLflowCallback(Callback):
    """Logs every eval's metrics, and the MoE routing statistics, at its step; skips the
    steps in ``skip`` (logged before a resume). If the store fails, training goes on: the
    first error is kept in ``error`` and nothing more is logged."""

    def __init__(self, run: Run, skip: set[int] | None = None) -> None:
        self.run, self.skip = run, skip or set()
        self.error: Exception | None = None

    def on_eval(self, step: int, metrics: dict[str, float], moe: MoEStats | None) -> None:
        if self.error is not None or step in self.skip:
            return
        try:
            self.run.log_metrics({**metrics, **(moe.as_metrics() if moe else {})}, step)
        except Exception as err:  # the store went away: keep training, report at the end
            self.error = err
            print(f"warning: MLflow store {tracking_uri()}: {err}".split("\n")[0], file=sys.stderr)
