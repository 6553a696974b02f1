"""MLflow's process-wide defaults (its default store and experiment), pointed at ours for
the few MLflow calls that take no client, and put back after."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import mlflow
import mlflow.tracking._tracking_service.utils as tracking_service
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_TRACKING_URI
from mlflow.tracking import fluent

from pipeline.tracking.store import tracking_uri


@contextlib.contextmanager
def fluent_defaults(experiment_id: str | None = None) -> Iterator[None]:
    """MLflow's default store (and experiment) set to ours while code runs that takes no
    client: ``Model.log`` logs to the default store, and creates its model in the default
    experiment, not its run's; the registry finds a ``models:/`` version's logged model in
    the default store. Then put back as they were, with the variables that setting them
    sets, so that nothing else in this process (a test, the next stage run in-process) logs
    elsewhere than it meant to."""
    uri, active = tracking_service._tracking_uri, fluent._active_experiment_id
    names = (MLFLOW_TRACKING_URI.name, MLFLOW_EXPERIMENT_ID.name)
    env = {name: os.environ.get(name) for name in names}
    mlflow.set_tracking_uri(tracking_uri())
    if experiment_id is not None:
        mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        tracking_service._tracking_uri, fluent._active_experiment_id = uri, active
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
