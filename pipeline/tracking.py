"""MLflow glue: where runs go, and a trainer callback that logs evals.

The store is MLflow 3's default, ``sqlite:///mlflow.db`` at the repo root, resolved to an
absolute path so runs from ``dvc exp run --temp/--queue`` (which execute under
``.dvc/tmp/exps``) land in the same place that a bare ``mlflow ui`` at the root reads.
Artifacts go to ``mlartifacts/`` at the root for the same reason. ``MLFLOW_TRACKING_URI``
overrides both (a team's tracking server).
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import mlflow

from nanomoe.trainer import Callback
from pipeline.params import repo_root

T = TypeVar("T")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def retry_locked(fn: Callable[..., T], attempts: int = 20) -> Callable[..., T]:
    """Retry ``fn`` while SQLite says the database is locked (concurrent writers), with
    jittered backoff; any other error passes through at once."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        for i in range(attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # MLflow wraps sqlite errors in its own exceptions
                if "locked" not in str(err).lower() or i == attempts - 1:
                    raise
                time.sleep(min(2.0, 0.05 * 2**i) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    return wrapper


def use_experiment(name: str) -> str:
    """Point MLflow at the project's store and the experiment ``name``; return its id."""
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")  # read first: set_tracking_uri sets it
    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    exp = retry_locked(client.get_experiment_by_name)(name)
    if exp is None:
        location = None
        if not user_uri:
            location = (repo_root() / "mlartifacts" / name).as_uri()
        try:
            retry_locked(client.create_experiment)(name, artifact_location=location)
        except mlflow.exceptions.MlflowException as err:
            if "already exists" not in str(err).lower():  # another process won the race
                raise
        exp = retry_locked(client.get_experiment_by_name)(name)
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    return exp.experiment_id


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo_root(),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class MLflowCallback(Callback):
    """Logs every eval's metrics at its step into the active MLflow run."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v == v}  # drop NaN
        retry_locked(mlflow.log_metrics)(clean, step=step, run_id=self.run_id)
