"""What a submission leaves in the clone, under ``.dvc/tmp/cluster/`` (git- and DVC-ignored),
on the shared filesystem where every task and the submitting user read it:

- ``run.json``: the submission (written by ``submit`` alone, atomically): the clone, the
  python that runs the tasks, the environment every task gets (the tracking URI, the
  checkpoints folder, threads, processes), each cell's checkpoint name, and the array jobs,
  each with the cells of every task (``--resubmit-failed`` adds a job);
- ``src/``: the code, params.yaml, dvc.yaml and dvc.lock (its train cells left out) as they
  were at submit: every task trains exactly that, whatever is edited in the clone meanwhile;
- ``cells/<target>.json``: each cell's state as its task last reported it (running, done,
  failed with the line that says why, preempted at a step), one file a cell, so tasks never
  write the same file;
- ``logs/``: each task's SLURM log (``<job>_<task>.log``) and each cell's own
  (``<target>.log``: what its dvc repro printed).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nanomoe.atomic import atomic_write_text
from pipeline.stage import StageError

HOME = Path(".dvc/tmp/cluster")


@dataclass
class Job:
    id: str  # the array job's id
    tasks: list[list[str]]  # each task's cells (stage targets), by array task id
    submitted: float = field(default_factory=time.time)


@dataclass
class Record:
    dir: Path
    root: str  # the clone
    python: str  # the interpreter every task runs (the clone's venv)
    env: dict[str, str]  # what every task's cells run with
    cache: str  # the shared DVC cache
    checkpoints: str  # the folder of in-progress checkpoints (shared)
    workdir: str  # where a task makes its worktree: "" for $TMPDIR on its node
    cells: dict[str, str]  # target -> its checkpoint's name (the cell's folder name)
    jobs: list[Job]

    @classmethod
    def load(cls, folder: Path) -> Record:
        path = folder / "run.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StageError(
                f"{path}: no submission here ({err.__class__.__name__}); submit first: "
                "python -m pipeline.cluster submit"
            ) from None
        doc["jobs"] = [Job(**j) for j in doc["jobs"]]
        return cls(dir=folder, **{k: v for k, v in doc.items() if k != "dir"})

    def save(self) -> None:
        doc = {k: v for k, v in asdict(self).items() if k != "dir"}
        atomic_write_text(self.dir / "run.json", json.dumps(doc, indent=2) + "\n")

    @property
    def src(self) -> Path:
        return self.dir / "src"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    def job(self, job_id: str) -> Job:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise StageError(f"{self.dir / 'run.json'}: no job {job_id}; was it submitted here?")

    def latest(self) -> dict[str, tuple[Job, int]]:
        """Each cell's latest job and task: a resubmitted cell's is the resubmission's."""
        where = {}
        for job in self.jobs:
            for task, targets in enumerate(job.tasks):
                for target in targets:
                    where[target] = (job, task)
        return where

    # --- each cell's state, as its task reports it --------------------------------------

    def _cell_file(self, target: str) -> Path:
        return self.dir / "cells" / f"{target}.json"

    def mark(self, target: str, state: str, **detail: object) -> None:
        doc = {"state": state, "at": time.time(), **detail}
        path = self._cell_file(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(doc) + "\n")

    def state(self, target: str) -> dict | None:
        try:
            return json.loads(self._cell_file(target).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def cell_log(self, target: str) -> Path:
        return self.logs / f"{target}.log"
