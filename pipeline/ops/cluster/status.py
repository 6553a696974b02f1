"""``status``, ``--wait`` and ``collect``: where each cell of a submission stands.

A cell's state comes from two places, read in this order: the queue (``squeue``: is its task
pending, running, or gone) and then what its task reported (``cells/<target>.json``: running,
done, failed and why, preempted), with the step it reached from its checkpoint's state file
in the shared checkpoints folder. The queue is read first, so a task that finishes in
between is seen with its report, never as gone without one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.ops import worktree
from pipeline.ops.cluster import slurm
from pipeline.ops.cluster.record import Record
from pipeline.stage import StageError
from pipeline.train.resume import ResumePoint

ACTIVE = ("pending", "running")
RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING")


@dataclass(frozen=True)
class CellStatus:
    target: str
    state: str  # pending, running, done, failed
    job: str
    task: int
    detail: str


def progress(record: Record, target: str) -> tuple[int, int] | None:
    folder = Path(record.checkpoints)
    name = record.cells[target]
    return ResumePoint(folder / f"{name}.pt", folder / f"{name}.json").progress()


def last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "empty log"


def cell_states(record: Record) -> list[CellStatus]:
    """Every cell of the submission, in submission order, with its state."""
    latest = record.latest()
    queued = slurm.queue([job.id for job in record.jobs])
    out = []
    for target, (job, task) in latest.items():
        q = queued.get((job.id, task))
        mark = record.state(target)
        if mark is not None and mark.get("job") != job.id:
            mark = None  # an earlier job's report of a resubmitted cell
        state = mark["state"] if mark else None
        step = progress(record, target)
        at = f"step {step[0]} of {step[1]}" if step else ""
        if state == "done":
            out.append(CellStatus(target, "done", job.id, task, f"{mark.get('seconds', 0):.0f} s"))
        elif state == "failed":
            out.append(CellStatus(target, "failed", job.id, task, mark.get("line", "")))
        elif q is not None and q.state == "PENDING":
            reason = "queued" if q.reason in ("None", "") else q.reason
            detail = reason + (f"; resumes at {at}" if at else "")
            out.append(CellStatus(target, "pending", job.id, task, detail))
        elif q is not None and q.state in RUNNING:
            if state in ("running", "preempted"):
                where = f"{at or 'starting'} on {q.node}"
                out.append(CellStatus(target, "running", job.id, task, where))
            else:
                out.append(CellStatus(target, "pending", job.id, task, "after its task's others"))
        else:
            log = record.logs / f"{job.id}_{task}.log"
            gone = "left the queue" if q is None else f"ended {q.state}"
            why = f"its task {gone} before the cell finished: {last_line(log)}"
            out.append(CellStatus(target, "failed", job.id, task, why))
    return out


def table(states: list[CellStatus]) -> str:
    """The status table as users see it, and a count by state."""
    rows = [("cell", "state", "job", "task", "detail")]
    rows += [(s.target, s.state, s.job, str(s.task), s.detail) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
             for r in rows]  # fmt: skip
    counts = {k: sum(s.state == k for s in states) for k in ("done", *ACTIVE, "failed")}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return "\n".join([*lines, f"{len(states)} cells: {summary}"])


def wait(record: Record, poll: float) -> list[CellStatus]:
    """Until no cell is pending or running: a line per cell that ends, with an ETA."""
    start = time.monotonic()
    seen = {s.target for s in cell_states(record) if s.state not in ACTIVE}
    finished_here = 0
    while True:
        states = cell_states(record)
        total = len(states)
        for s in states:
            if s.state in ACTIVE or s.target in seen:
                continue
            seen.add(s.target)
            finished_here += 1
            elapsed = time.monotonic() - start
            left = sum(x.state in ACTIVE for x in states)
            eta = elapsed / finished_here * left
            print(
                f"[{len(seen)}/{total}] {s.target}: {s.state} ({s.detail}); "
                f"{elapsed:.0f} s in, about {eta:.0f} s to go",
                flush=True,
            )
        if not any(s.state in ACTIVE for s in states):
            return states
        time.sleep(poll)


def collect(root: Path, targets: list[str], pull: bool = False) -> int:
    """Every cell restored from the run cache here, and the report written: dvc repro."""
    if worktree.collect(root, targets, pull) != 0:
        raise StageError("dvc.yaml: dvc repro failed while collecting; see above")
    return 0
