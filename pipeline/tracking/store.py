"""The MLflow store and its runs, for every stage and the tuner alike.

- **Where runs go.** MLflow 3's default store, ``sqlite:///mlflow.db`` at the project root,
  so a bare ``mlflow ui`` there reads it; artifacts in ``mlartifacts/`` beside it. Under
  ``dvc exp run --temp/--queue`` the stages run in a temporary copy, and DVC_ROOT names the
  parent repo: the store follows it, so every experiment's runs land in one place (project
  files do not: see layout.py). ``MLFLOW_TRACKING_URI`` overrides both (a team's server).
- **Retries.** SQLite answers "database is locked" while another process writes; every call
  is retried with jittered backoff.
- **Runs by id.** Runs are created, logged and closed through the client API with explicit
  run ids, so several runs in one process (Optuna trials, tests) share no fluent state.
- **Dead runs.** ``close_dead_run`` marks the run of a process that died FAILED, with why.
- **System metrics.** A run inside ``tracked`` records CPU, memory, disk and network (and GPU
  utilisation and memory where NVIDIA's bindings are installed: the ``gpu`` extra) through
  MLflow's system-metrics monitor, every 10 s in a background thread
  (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` changes it, and
  ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`` turns it off).

The trainer's callback, which logs through ``Run``, lives in ``pipeline/train/run_callback.py``:
this module imports no torch, so the report stage, which only reads runs and logs a summary,
stays light.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow.entities import Param, RunTag
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking.context import registry as context_registry

from pipeline.layout import project_root
from pipeline.stage import StageError

T = TypeVar("T")
STATUS = ("FINISHED", "FAILED", "KILLED", "RUNNING")


def store_root() -> Path:
    """The folder of the default store: the parent repo under ``dvc exp run --temp``."""
    return Path(os.environ["DVC_ROOT"]).resolve() if os.environ.get("DVC_ROOT") else project_root()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"


def check_store(timeout: float = 5.0, tries: int = 3) -> None:
    """Fail fast, in one line, when the tracking server does not answer: at most ``tries``
    requests of ``timeout`` seconds (17 s in all), where MLflow's own retries, which every
    later call keeps, take minutes. Any HTTP answer will do (auth and the rest are MLflow's
    to report); a local store (SQLite, files) is not checked."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    reason = ""
    for i in range(tries):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError) as err:
            reason = str(getattr(err, "reason", err))
        if i < tries - 1:
            time.sleep(1.0)
    raise StageError(
        f"MLFLOW_TRACKING_URI: {uri} does not answer ({reason}; {tries} tries); start the "
        "server or fix the address (unset it for the local store, mlflow.db)"
    )


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


class Client:
    """An ``MlflowClient`` on ``tracking_uri()`` whose every call is retried while locked."""

    def __init__(self) -> None:
        self._client = retry_locked(mlflow.MlflowClient)(tracking_uri())

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return retry_locked(getattr(self._client, name))


def experiment_id(client: Client, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside the store) if need be."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        uri = tracking_uri()
        if uri.startswith("sqlite:///"):  # the default store, or a worker's shared one
            location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).as_uri()
        try:
            client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException as err:
            if "already exists" not in str(err).lower():  # else another process won the race
                raise
        exp = client.get_experiment_by_name(name)
    return exp.experiment_id


def run_model_id(client: Client, run_id: str) -> str | None:
    """The id of the model run ``run_id`` logged (its last), or None."""
    outputs = client.get_run(run_id).outputs
    models = outputs.model_outputs if outputs else []
    return models[-1].model_id if models else None


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: nested configs as MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Run:
    """One MLflow run, addressed by its id."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client, self.id = client, run_id

    @classmethod
    def start(
        cls, experiment: str, name: str, tags: dict[str, Any], parent: Run | None = None
    ) -> Run:
        client = Client() if parent is None else parent.client
        tags = {**tags, **({"mlflow.parentRunId": parent.id} if parent else {})}
        tags = {k: str(v) for k, v in tags.items()}  # the REST store refuses any other type
        run = client.create_run(
            experiment_id(client, experiment),
            run_name=name,
            tags=context_registry.resolve_tags(tags),  # user, source, as the fluent API does
        )
        return cls(client, run.info.run_id)

    @classmethod
    def reopen(cls, run_id: str) -> Run | None:
        """The run ``run_id`` again, RUNNING; None if the store no longer has it."""
        run = cls(Client(), run_id)
        if not run.is_active():
            return None
        run.end("RUNNING")
        return run

    def logged_steps(self, key: str) -> set[int]:
        """The steps at which metric ``key`` was logged."""
        return {m.step for m in self.client.get_metric_history(self.id, key)}

    def is_active(self) -> bool:
        """Whether the run still exists in this store, not deleted."""
        try:
            return self.client.get_run(self.id).info.lifecycle_stage == "active"
        except mlflow.exceptions.MlflowException:  # another store, or deleted for good
            return False

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.id, params=items[i : i + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v == v}  # NaN is not loggable
        ts = int(time.time() * 1000)
        batch = [mlflow.entities.Metric(k, v, ts, step) for k, v in clean.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.id, metrics=batch[i : i + 1000])

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(self.id, str(path), folder)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.id, text, artifact_file)

    def end(self, status: str) -> None:
        assert status in STATUS, status
        if status == "RUNNING":
            self.client.update_run(self.id, status="RUNNING")
        else:
            self.client.set_terminated(self.id, status)

    def delete(self) -> None:
        self.client.delete_run(self.id)


@contextlib.contextmanager
def tracked(run: Run) -> Iterator[Run]:
    """``run`` records system metrics while it lasts, then ends FINISHED, or KILLED on
    Ctrl-C/``kill``, or FAILED on an error; a store that fails to record the end does not
    hide the error that ended the run."""
    try:
        with system_metrics(run):
            yield run
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        with contextlib.suppress(Exception):
            run.end(status)
        raise
    run.end("FINISHED")


@contextlib.contextmanager
def system_metrics(run: Run) -> Iterator[None]:
    """MLflow's system-metrics monitor on ``run`` (``system/*`` metrics, numbered on from a
    resumed run's), unless ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` is set false."""
    switch = MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
    if switch.is_set() and not switch.get():
        yield
        return
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines
    monitor = SystemMetricsMonitor(run.id, resume_logging=True, tracking_uri=tracking_uri())
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def close_dead_run(run_id: str | None, why: str, status: str = "FAILED") -> None:
    """The run of a process that died: ``status``, with the reason as its ``note`` tag."""
    if not run_id:
        return
    try:
        run = Run(Client(), run_id)
        run.set_tags({"state": status.lower(), "note": why})
        run.end(status)
    except mlflow.exceptions.MlflowException as err:
        print(f"warning: could not close MLflow run {run_id}: {err}", file=sys.stderr)
