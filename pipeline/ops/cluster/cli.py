"""The grid and the tuner on a SLURM cluster.

    python -m pipeline.cluster submit --partition gpu --gres gpu:1 --time 2:00:00 --wait
    python -m pipeline.cluster status                 # each cell: pending, running, done, failed
    python -m pipeline.cluster submit --resubmit-failed
    python -m pipeline.cluster collect                # restore every cell here, write the report
    python -m pipeline.cluster tune --trials 50 --workers 4 --storage postgresql+psycopg://...

Run from the clone on the shared filesystem, on a login node. ``submit`` checks SLURM, the job
(sbatch --test-only), dvc.yaml and the tracking store, runs the upstream stages once here,
then submits one array task per cell (``--cells-per-task N``). Each task trains in a worktree
on its node's local disk with the clone's DVC cache (which must be on the shared filesystem,
``cache.shared group``) and the tracking URI of this shell (MLFLOW_TRACKING_URI: the team's
server; a SQLite file works on one node). On SIGTERM a cell saves a checkpoint at its step in
the checkpoints folder (``--checkpoints``, default .checkpoints/ in the clone: shared) and
its task requeues itself; requeued, it resumes there, bit for bit. ``--wait`` follows the
cells with an ETA and collects. README: the Cluster section.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.layout import project_root
from pipeline.ops.cluster import slurm
from pipeline.ops.cluster.options import add_slurm_options
from pipeline.ops.cluster.record import HOME, Record
from pipeline.ops.cluster.status import ACTIVE, cell_states, collect, table, wait
from pipeline.stage import StageError

RawHelp = argparse.RawDescriptionHelpFormatter


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.cluster", description=__doc__, formatter_class=RawHelp
    )
    verbs = ap.add_subparsers(dest="verb", required=True, metavar="VERB")
    sub = verbs.add_parser("submit", help="submit the grid's cells as one array job")
    sub.add_argument(
        "--cells-per-task", type=int, default=1, metavar="N", help="cells each task trains (1)"
    )
    sub.add_argument(
        "--checkpoints",
        metavar="DIR",
        help="in-progress checkpoints, on the shared filesystem (default: .checkpoints/ here "
        "or $NANOMOE_CHECKPOINTS)",
    )
    sub.add_argument(
        "--workdir",
        metavar="DIR",
        help="each task's worktree folder (default: $TMPDIR on its node)",
    )
    sub.add_argument("--resubmit-failed", action="store_true", help="send only the failed cells")
    sub.add_argument("--wait", action="store_true", help="follow the cells, then collect")
    sub.add_argument("--poll", type=float, default=10.0, help="--wait: seconds between looks")
    add_slurm_options(sub)

    verbs.add_parser(
        "status", help="one line per cell: pending, running at step s of S, done, failed"
    )
    col = verbs.add_parser("collect", help="restore every cell from the run cache; the report")
    col.add_argument("--pull", action="store_true", help="dvc repro --pull (a DVC remote)")

    tune = verbs.add_parser("tune", help="tuner workers as one array job on one study")
    tune.add_argument(
        "--trials", type=int, required=True, help="finished trials the study ends with"
    )
    tune.add_argument("--workers", type=int, default=4, help="tuner workers: array tasks (4)")
    tune.add_argument("--storage", help="a database URL (default: $NANOMOE_TUNE_STORAGE)")
    tune.add_argument("--study-name", help="default: tune.study_name of params.yaml")
    tune.add_argument("--seed", type=int, help="training seed of every trial, and the sampler's")
    tune.add_argument("--wait", action="store_true", help="until every worker has ended")
    tune.add_argument("--poll", type=float, default=10.0, help="--wait: seconds between looks")
    add_slurm_options(tune)

    verbs.add_parser("task", help="(the batch script's) one array task of the grid")
    verbs.add_parser("tune-task", help="(the batch script's) one tuner worker")
    return ap.parse_args(argv)


def record_here() -> Record:
    return Record.load(project_root() / HOME)


def submit(a: argparse.Namespace) -> int:
    from pipeline.ops.cluster.submit import resubmit, submit

    folder = project_root() / HOME
    slurm.require()
    if a.resubmit_failed:
        record = Record.load(folder)
        states = cell_states(record)
        failed = [s.target for s in states if s.state == "failed"]
        if not failed:
            print("nothing to resubmit: no cell has failed (python -m pipeline.cluster status)")
            return 0
        resubmit(record, failed, a)
    else:
        if (folder / "run.json").exists():
            busy = [s for s in cell_states(Record.load(folder)) if s.state in ACTIVE]
            if busy:
                raise StageError(
                    f"{folder / 'run.json'}: {len(busy)} cell(s) of the last submission are "
                    f"still queued (job {busy[0].job}); wait for them, or scancel it first"
                )
        record = submit(a)
    if not a.wait:
        return 0
    return finish(record, a.poll)


def finish(record: Record, poll: float) -> int:
    states = wait(record, poll)
    failed = [s for s in states if s.state == "failed"]
    if failed:
        print(table(states))
        raise StageError(
            f"{failed[0].target}: failed ({failed[0].detail}); {len(failed)} cell(s) failed: "
            "fix it, then python -m pipeline.cluster submit --resubmit-failed"
        )
    print(f"all {len(states)} cells done; collecting", flush=True)
    return collect(project_root(), list(record.cells))


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.verb == "submit":
        return submit(a)
    if a.verb == "status":
        slurm.require()
        print(table(cell_states(record_here())))
        return 0
    if a.verb == "collect":
        return collect(project_root(), list(record_here().cells), a.pull)
    if a.verb == "tune":
        from pipeline.ops.cluster.tune import submit_tune, wait_tune

        job = submit_tune(a)
        if a.wait:
            wait_tune(job, a.poll)
            print(f"job {job}: every worker has ended")
        return 0
    if a.verb == "task":
        from pipeline.ops.cluster.task import main as task

        return task()
    if a.verb == "tune-task":
        from pipeline.ops.cluster.tune import main_task

        return main_task()
    raise AssertionError(a.verb)


if __name__ == "__main__":
    sys.exit(main())
