"""``tune``: the tuner's workers as one SLURM array job sharing one study.

    python -m pipeline.cluster tune --trials 50 --workers 4 --storage postgresql+psycopg://...

Each task runs ``python -m pipeline.tune --trials N --jobs 1`` in the clone (on the shared
filesystem) with the study in the database: the tuner's own claiming makes the study end
with exactly N finished trials however many workers share it (pipeline/tune/workers.py).
The storage must be a database: a journal file relies on file locks, which network
filesystems do not keep. Before the array: the tuned tokenizer's data stages run here once,
and the study's tables and the MLflow experiment are created once (workers that all created
them at once would race). A worker's task forwards SIGTERM to the tuner (its trial is marked
failed and run again by the study) and requeues itself, as a grid task does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from nanomoe.atomic import atomic_write_text
from pipeline.ops.cluster import slurm
from pipeline.ops.cluster.options import sbatch_options
from pipeline.ops.cluster.record import HOME
from pipeline.ops.cluster.submit import array_options, write_script
from pipeline.ops.cluster.task import Forwarder
from pipeline.ops.worktree import on_path, run_upstream
from pipeline.project import Project
from pipeline.stage import StageError
from pipeline.tracking import Client, check_store, experiment_id, tracking_uri
from pipeline.train.preempt import EXIT_PREEMPTED
from pipeline.tune.command import STORAGE_ENV, is_url

TUNE_EXPERIMENT = "nanomoe-tune"


def storage_url(a: argparse.Namespace) -> str:
    storage = a.storage or os.environ.get(STORAGE_ENV)
    if not is_url(storage):
        given = storage or "a journal file (the default)"
        raise StageError(
            f"--storage: {given} is not for a cluster: a journal file needs file locks, "
            "which network filesystems do not keep; give a database URL, e.g. --storage "
            "postgresql+psycopg://user@host/db"
        )
    return storage


def tuner_args(a: argparse.Namespace) -> list[str]:
    args = ["--trials", str(a.trials), "--jobs", "1"]
    if a.study_name:
        args += ["--study-name", a.study_name]
    if a.seed is not None:
        args += ["--seed", str(a.seed)]
    return args


def submit_tune(a: argparse.Namespace) -> str:
    if a.trials < 1 or a.workers < 1:
        raise StageError("--trials and --workers: must be 1 or more")
    storage = storage_url(a)
    project = Project.load()
    root, layout, params = project.root, project.layout, project.params
    slurm.require()
    folder = root / HOME / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    script = write_script(folder, root, "tune", "tune-task")
    options = array_options(folder, a.workers, "nanomoe-tune", sbatch_options(a))
    slurm.sbatch(str(script), options, test_only=True)

    from pipeline.tune.settings import tuned_levels
    from pipeline.tune.storage import open_storage

    check_store()
    experiment_id(Client(), TUNE_EXPERIMENT)
    open_storage(storage, layout.tune_dir / "journal.log")  # the study's tables, made once
    stage = f"mine_fgrams@{tuned_levels(params)['tokenizer']}"
    print(f"upstream stages, once, here: dvc repro {stage}", flush=True)
    run_upstream(root, [stage])
    env = {"MLFLOW_TRACKING_URI": tracking_uri(), STORAGE_ENV: storage}
    doc = {"root": str(root), "python": sys.executable, "args": tuner_args(a), "env": env}
    atomic_write_text(folder / "run.json", json.dumps(doc, indent=2) + "\n")
    (folder / "run.json").chmod(0o600)  # the storage URL may hold a password
    job = slurm.sbatch(str(script), options)
    doc["job"] = job
    atomic_write_text(folder / "run.json", json.dumps(doc, indent=2) + "\n")
    print(f"submitted job {job}: {a.workers} tuner worker(s) on one study, {a.trials} trials")
    return job


def wait_tune(job: str, poll: float) -> None:
    """Until the workers' job has left the queue (or every task has ended)."""
    while any(q.state in ("PENDING", "RUNNING", "COMPLETING") for q in slurm.queue([job]).values()):
        time.sleep(poll)


def main_task() -> int:
    """One tuner worker (the batch script's line): the tuner, SIGTERM forwarded, requeued."""
    folder = Path(os.environ["NANOMOE_CLUSTER_DIR"])
    doc = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    threads = os.environ.get("SLURM_CPUS_PER_TASK") or "1"
    env = {**os.environ, **doc["env"], "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    env = on_path(env, doc["python"])
    fwd = Forwarder()
    log = folder / "logs" / f"worker-{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}.log"
    code = fwd.call(
        [doc["python"], "-m", "pipeline.tune", *doc["args"]], Path(doc["root"]), env, log
    )
    if fwd.terminated:
        why = slurm.requeue(os.environ.get("SLURM_JOB_ID", ""))
        print("SIGTERM: " + ("requeued" if why is None else f"not requeued ({why})"), flush=True)
        return EXIT_PREEMPTED
    return code
