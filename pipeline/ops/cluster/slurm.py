"""SLURM's commands, as the cluster verbs call them: one function each, and every failure a
one-line ``StageError`` that passes SLURM's own words on.

No ``sacct``: it needs the accounting daemon (slurmdbd), which many small clusters do not
run. What a task did is in the record its task writes (record.py); what the queue holds, in
``squeue``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from pipeline.stage import StageError

TIMEOUT_S = 60


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise StageError(
            f"{cmd[0]}: no answer in {TIMEOUT_S} s ({what}); check that slurmctld runs "
            "(scontrol ping)"
        ) from None


def _said(proc: subprocess.CompletedProcess) -> str:
    """SLURM's own reason, in one line: its last ``error:`` line without the prefixes."""
    lines = [x.strip() for x in (proc.stderr + proc.stdout).splitlines() if x.strip()]
    errors = [x for x in lines if "error:" in x] or lines or ["no output"]
    return errors[-1].split("error:", 1)[-1].strip()


def require() -> None:
    """sbatch on PATH and a controller that answers, or one line saying which is missing."""
    if shutil.which("sbatch") is None:
        raise StageError(
            "sbatch: not found on PATH; run this on a SLURM login node (or, for a one-node "
            "test cluster on this machine, make slurm-up)"
        )
    ping = _run(["scontrol", "ping"], "scontrol ping")
    if ping.returncode != 0 or "UP" not in ping.stdout:
        said = ping.stdout.strip().splitlines()[-1] if ping.stdout.strip() else _said(ping)
        raise StageError(
            f"slurmctld: not answering ({said}); start it, or point SLURM_CONF at the "
            "cluster's slurm.conf"
        )


def node_count() -> int:
    """The nodes of the cluster (those sinfo lists, in any state)."""
    out = _run(["sinfo", "-h", "-N", "-o", "%N"], "sinfo")
    if out.returncode != 0:
        raise StageError(f"sinfo: {_said(out)}; check the cluster (scontrol ping)")
    return len(set(out.stdout.split())) or 1


def sbatch(script: str, options: list[str], test_only: bool = False) -> str:
    """Submit ``script`` (its path) with ``options``: the job id; ``test_only``: SLURM
    checks the job (partition, resources, account) and queues nothing. A refusal is one
    line with SLURM's reason."""
    cmd = ["sbatch", "--test-only" if test_only else "--parsable", *options, script]
    out = _run(cmd, "sbatch")
    if out.returncode != 0:
        raise StageError(
            f"sbatch: SLURM refused the job ({_said(out)}); fix the option it names "
            f"(sbatch {' '.join(options)})"
        )
    return "" if test_only else out.stdout.strip().split(";")[0]


@dataclass(frozen=True)
class Queued:
    job: str  # the array's job id
    task: int  # the array task id
    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str  # why pending (Priority, Resources, BeginTime, ...); None when running
    node: str


def queue(jobs: list[str]) -> dict[tuple[str, int], Queued]:
    """What the queue holds of the array jobs ``jobs``, by (job, task)."""
    if not jobs:
        return {}
    cmd = ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(jobs), "-o", "%F|%K|%T|%r|%N"]
    out = _run(cmd, "squeue")
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # every job has left the queue
            return {}
        raise StageError(f"squeue: {_said(out)}; check the cluster (scontrol ping)")
    held = {}
    for line in out.stdout.splitlines():
        job, task, state, reason, node = (line.split("|") + [""] * 5)[:5]
        if task.isdigit():
            held[job, int(task)] = Queued(job, int(task), state, reason, node)
    return held


def job_state(job_id: str) -> tuple[str, str]:
    """(state, reason) SLURM holds for job ``job_id``: ("RUNNING", "None"), ... ("", "")
    when it does not know the job."""
    out = _run(["scontrol", "show", "job", "-o", job_id], "scontrol show job")
    fields = dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)
    return fields.get("JobState", ""), fields.get("Reason", "")


def cancelled(job_id: str) -> bool:
    """Whether a user cancelled job ``job_id`` (``scancel``, which sends SIGTERM too): SLURM
    is ending it for no reason of its own. A time limit ends it with Reason=TimeLimit, and a
    signal alone (``scancel --signal=TERM``, a preemption's) leaves it RUNNING."""
    state, reason = job_state(job_id)
    return state in ("CANCELLED", "COMPLETING") and reason in ("None", "")


def requeue(job_id: str) -> str | None:
    """Queue job ``job_id`` again (``scontrol requeue``) unless a user cancelled it; None,
    or the reason why not (a job SLURM is already requeueing says so)."""
    if cancelled(job_id):
        return "cancelled with scancel"
    out = _run(["scontrol", "requeue", job_id], "scontrol requeue")
    return None if out.returncode == 0 else _said(out)
