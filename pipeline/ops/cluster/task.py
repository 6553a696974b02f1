"""What one array task runs on its node: ``python -m pipeline.cluster task`` (the batch
script's only line; users never type it).

1. A git worktree of the clone on the node's local disk (``--workdir``, else $TMPDIR, else
   /tmp), made anew, with the code and params of the submission (``src/``) and the shared
   DVC cache as its cache (``cache.shared group``).
2. For each of its cells: ``dvc checkout`` of the data the cell reads (prepared splits,
   tokenizer, F-gram table: restored from the shared cache, never downloaded or prepared
   again), then ``dvc repro --single-item <cell>``, which restores the cell from the run cache
   when it has been trained, or trains it, saving it to the shared cache and its run cache.
   Each cell's state goes to ``cells/<target>.json`` (record.py).
3. SIGTERM (preemption, a time limit, ``scancel --signal=TERM``, ``scontrol requeue``): the
   signal goes on to the cell's processes, whose train stage saves a checkpoint at the step
   it reached (pipeline/train/preempt.py) in the shared checkpoints folder; then the task queues
   itself again (``scontrol requeue $SLURM_JOB_ID``: SLURM has no exit code that requeues by
   default) and exits 143. Requeued, on any node, it runs its cells again: those done are
   restored from the run cache, the preempted one resumes from its checkpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.layout import Layout
from pipeline.ops.cluster import slurm
from pipeline.ops.cluster.record import Record
from pipeline.ops.worktree import (
    add_worktree,
    copy_sources,
    dvc,
    on_path,
    read_lock,
    run,
    use_cache,
)
from pipeline.train.preempt import EXIT_PREEMPTED

GRACE_S = 60  # how long the cell's processes get to save and exit after SIGTERM


class Forwarder:
    """SIGTERM to this task goes on to the process group of the command it runs."""

    def __init__(self) -> None:
        self.terminated = False
        self.group: int | None = None
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum, frame) -> None:
        self.terminated = True
        if self.group is not None:
            try:
                os.killpg(self.group, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def call(self, cmd: list[str], cwd: Path, env: dict, log: Path) -> int:
        """Run ``cmd`` in its own process group, its output appended to ``log``; after a
        SIGTERM, wait until every process of the group has exited (the train stage saving
        its checkpoint), at most GRACE_S."""
        if self.terminated:
            return EXIT_PREEMPTED
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\n=== {' '.join(cmd[2:])} ({socket.gethostname()}, {time.ctime()})\n")
            out.flush()
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=out, start_new_session=True
            )
            self.group = proc.pid
            if self.terminated:  # the signal came before the group existed
                self._on_term(signal.SIGTERM, None)
            code = proc.wait()
            self.group = None
        if self.terminated:
            _wait_for_group(proc.pid, GRACE_S)
        return code


def _wait_for_group(group: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def why_failed(log: Path) -> str:
    """The line of a cell's log that says why its last command failed: the stage's
    ``error:`` line, else DVC's ``ERROR:`` with the lines that go on from it (DVC names the
    missing files on the next line), else the last line."""
    text = log.read_text(errors="replace")
    last = text.split("\n=== ")[-1].splitlines()[1:]  # the last command's output
    lines = [x.strip() for x in last if x.strip() and not x.strip().startswith("<http")]
    for prefix in ("error:", "ERROR:"):
        at = [i for i, x in enumerate(lines) if x.startswith(prefix)]
        if at:
            said = [lines[at[-1]]]
            if prefix == "ERROR:":  # DVC's: the targets, and its hint, follow
                said += lines[at[-1] + 1 : at[-1] + 3]
            return " ".join(said)
    return lines[-1] if lines else "no output"


def task_env(record: Record) -> dict[str, str]:
    env = on_path({**os.environ, **record.env}, record.python)
    threads = os.environ.get("SLURM_CPUS_PER_TASK") or "1"
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", threads)
    env.pop("PYTHONPATH", None)  # the worktree imports its own copy of the code
    return env


def worktree(record: Record, name: str) -> Path:
    """The task's worktree, made anew (a requeued task may land on the node it left)."""
    base = Path(record.workdir or os.environ.get("TMPDIR") or "/tmp")
    where = base / f"nanomoe-{name}"
    shutil.rmtree(where, ignore_errors=True)
    add_worktree(Path(record.root), where)
    copy_sources(record.src, where, lock=read_lock(record.src))
    use_cache(where, record.cache, shared=True)
    return where


def run_cell(record: Record, target: str, where: Path, env: dict, fwd: Forwarder) -> int:
    """Check out the cell's data, then ``dvc repro --single-item`` it; its exit code."""
    log = record.cell_log(target)
    data = Layout.load(where).data_deps(target.split("@")[0])
    rel = [str(p.relative_to(where)) for p in data]
    code = fwd.call(dvc("checkout", *rel), where, env, log)
    if code == 0:
        code = fwd.call(dvc("repro", "--single-item", target), where, env, log)
    return code


def main() -> int:
    folder = Path(os.environ["NANOMOE_CLUSTER_DIR"])
    record = Record.load(folder)
    job_id, index = os.environ["SLURM_ARRAY_JOB_ID"], int(os.environ["SLURM_ARRAY_TASK_ID"])
    own = os.environ.get("SLURM_JOB_ID", job_id)
    fwd = Forwarder()
    targets = record.job(job_id).tasks[index]
    where = worktree(record, f"{job_id}_{index}")
    env = task_env(record)
    at = {"job": job_id, "task": index, "host": socket.gethostname()}  # in every report
    failed = 0
    for target in targets:
        record.mark(target, "running", **at)
        t0 = time.monotonic()
        code = run_cell(record, target, where, env, fwd)
        if fwd.terminated:
            record.mark(target, "preempted", **at)
            why = slurm.requeue(own)
            said = "requeued" if why is None else f"not requeued by this task ({why})"
            print(f"{target}: SIGTERM, checkpoint saved; {said}", flush=True)
            return EXIT_PREEMPTED
        if code == 0:
            record.mark(target, "done", **at, seconds=round(time.monotonic() - t0, 1))
            print(f"{target}: done in {time.monotonic() - t0:.0f} s", flush=True)
        else:
            line = why_failed(record.cell_log(target))
            record.mark(target, "failed", **at, line=line)
            print(f"{target}: failed: {line}", flush=True)
            failed += 1
    run(["git", "worktree", "remove", "--force", str(where)], Path(record.root))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
