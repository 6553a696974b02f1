"""``submit``: the grid's cells as one SLURM array job.

Before anything is queued: SLURM answers (``scontrol ping``), the job is one SLURM would
accept (``sbatch --test-only``: a wrong partition, account or ``--gres`` is refused here, in
SLURM's words), dvc.yaml matches the grid, and the tracking store answers and holds the
experiment (created once here: tasks that all created a fresh SQLite store at once broke it
for good). Then the upstream stages (download, tokenizer, prepare, mine_fgrams) run **here,
in the submitting process**, once; the tasks only check their outputs out of the shared DVC
cache. Then one ``sbatch --array`` with ``--requeue``: one task a cell, or
``--cells-per-task N``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from pipeline.ops.cluster import slurm
from pipeline.ops.cluster.options import gpus, sbatch_options
from pipeline.ops.cluster.record import HOME, Job, Record
from pipeline.ops.cluster.shared import unshared_warning
from pipeline.ops.grid import require_current, target_cells
from pipeline.ops.worktree import (
    SOURCES,
    cache_dir,
    copy_sources,
    read_lock,
    run_upstream,
    upstream_stages,
    without_cells,
)
from pipeline.project import Project
from pipeline.stage import StageError
from pipeline.tracking import Client, check_store, experiment_id, tracking_uri

EXPERIMENT = "nanomoe-ablation"  # pipeline.cell_run's, without importing torch here
SCRIPT = """#!/bin/bash
# Written by python -m pipeline.cluster {verb}: what each array task runs.
export NANOMOE_CLUSTER_DIR={dir}
cd {root}
exec {python} -m pipeline.cluster {task}
"""


def chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def write_script(folder: Path, root: Path, verb: str, task: str) -> Path:
    """The batch script (``exec``: the task's python is the process SLURM signals)."""
    path = folder / f"{task}.sh"
    text = SCRIPT.format(verb=verb, dir=folder, root=root, python=sys.executable, task=task)
    path.write_text(text)
    path.chmod(0o700)
    return path


def array_options(folder: Path, n_tasks: int, name: str, user: list[str]) -> list[str]:
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    return [
        f"--array=0-{n_tasks - 1}",
        "--requeue",  # a preempted task (or one that requeues itself) queues again
        "--open-mode=append",  # a requeued task's log goes on after the preempted one's
        f"--output={folder / 'logs'}/%A_%a.log",
        f"--job-name={name}",
        *user,
    ]


def snapshot(root: Path, folder: Path, cells: list[str]) -> None:
    """src/: the code and params every task trains, and dvc.lock without the cells."""
    src = folder / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    copy_sources(root, src, lock=without_cells(read_lock(root), [*cells, "report"]))
    for name in SOURCES:
        if not (src / name).exists():
            raise StageError(f"{root / name}: missing; restore it from git")


def store(nodes: int) -> str:
    """The tracking URI every task logs to, checked and holding the experiment."""
    check_store()
    uri = tracking_uri()
    if uri.startswith("sqlite:") and nodes > 1:
        print(
            f"warning: MLFLOW_TRACKING_URI: {uri} is a SQLite file and the cluster has "
            f"{nodes} nodes: SQLite on a network filesystem corrupts; set "
            "MLFLOW_TRACKING_URI to the team's tracking server (mlflow server)",
            file=sys.stderr,
        )
    experiment_id(Client(), EXPERIMENT)
    return uri


def submit(a: argparse.Namespace) -> Record:
    project = Project.load()
    root, layout, params = project.root, project.layout, project.params
    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    require_current(text, params.grid, root, params.design)
    cells = target_cells(params.grid, params.seeds, params.design)
    if a.cells_per_task < 1:
        raise StageError(f"--cells-per-task {a.cells_per_task}: must be 1 or more")
    nodes = slurm.node_count()
    folder = root / HOME
    n_gpus = gpus(a.gres)
    tasks = chunks(list(cells), a.cells_per_task)
    folder.mkdir(parents=True, exist_ok=True)
    script = write_script(folder, root, "submit", "task")
    options = array_options(folder, len(tasks), "nanomoe-grid", sbatch_options(a))
    slurm.sbatch(str(script), options, test_only=True)

    checkpoints = Path(a.checkpoints).resolve() if a.checkpoints else layout.checkpoints
    cache = cache_dir(root)
    for what, path in (("--checkpoints", checkpoints), ("the DVC cache", Path(cache))):
        warning = unshared_warning(what, path, nodes)
        if warning:
            print(warning, file=sys.stderr)
    env = {"MLFLOW_TRACKING_URI": store(nodes), "NANOMOE_CHECKPOINTS": str(checkpoints)}
    if n_gpus > 1:
        env["NANOMOE_NPROC"] = str(n_gpus)
    stages = upstream_stages(layout)
    print(f"upstream stages, once, here: dvc repro {' '.join(stages)}", flush=True)
    run_upstream(root, stages)
    snapshot(root, folder, list(cells))
    shutil.rmtree(folder / "cells", ignore_errors=True)
    names = {t: layout.run_files(c, s)["metrics.json"].parent.name for t, (c, s) in cells.items()}
    record = Record(
        dir=folder,
        root=str(root),
        python=sys.executable,
        env=env,
        cache=cache,
        checkpoints=str(checkpoints),
        workdir=str(Path(a.workdir).resolve()) if a.workdir else "",
        cells=names,
        jobs=[],
    )
    record.save()
    job = slurm.sbatch(str(script), options)
    record.jobs.append(Job(job, tasks))
    record.save()
    print(
        f"submitted job {job}: {len(cells)} cells in {len(tasks)} task(s); "
        "python -m pipeline.cluster status shows where they stand"
    )
    return record


def resubmit(record: Record, failed: list[str], a: argparse.Namespace) -> str:
    """The cells in ``failed`` as a new array job of the same submission."""
    folder = record.dir
    script = write_script(folder, Path(record.root), "submit", "task")
    tasks = chunks(failed, a.cells_per_task)
    options = array_options(folder, len(tasks), "nanomoe-grid", sbatch_options(a))
    slurm.sbatch(str(script), options, test_only=True)
    job = slurm.sbatch(str(script), options)
    record.jobs.append(Job(job, tasks))
    record.save()
    print(f"resubmitted {len(failed)} cell(s) as job {job}: {', '.join(failed)}")
    return job
