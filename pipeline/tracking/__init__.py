"""Everything the pipeline says to MLflow, for every stage and the tuner: the only package
that imports it.

- ``store``: where runs go, the retried client, runs by id, system metrics (``Run``).
- ``dataset``: a cell's corpus splits as the run's dataset inputs.
- ``model``: a cell's logged model (``generator.py`` is what MLflow loads) and finding it again.
- ``registry``: the report's registered model, its ``best`` alias, and the parent run.
- ``defaults``: MLflow's process-wide defaults, pointed at our store where a call takes no client.

The names most stages need come from here; ``model`` and ``registry`` are imported where
they are used, as MLflow's model code is slow to import.
"""

from pipeline.tracking.store import (
    STATUS,
    Client,
    Run,
    check_store,
    close_dead_run,
    experiment_id,
    flatten,
    git_commit,
    retry_locked,
    store_root,
    system_metrics,
    tracked,
    tracking_uri,
)

__all__ = [
    "STATUS",
    "Client",
    "Run",
    "check_store",
    "close_dead_run",
    "experiment_id",
    "flatten",
    "git_commit",
    "retry_locked",
    "store_root",
    "system_metrics",
    "tracked",
    "tracking_uri",
]
