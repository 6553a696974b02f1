"""Train the grid with several workers on one machine, on DVC's own engine, then write the
report: what ``make repro`` runs (``WORKERS=1``: plain ``dvc repro``).

    python -m pipeline.workers -j 2              # 2 workers, cores/2 threads each
    python -m pipeline.workers -j 4 --threads 4  # on a 16-core machine

``dvc repro`` holds a lock on its workspace, so two of them in one folder run in turn (a
plain ``xargs -P``). Each worker here is a git worktree of this clone under
``.dvc/tmp/workers/`` (kept between runs, so a killed cell resumes from its checkpoint), with
this clone's code, params.yaml and dvc.yaml copied in and this clone's DVC cache as its cache.
Workers take the next cell from ``python -m pipeline.grid --targets`` (slowest first) and run
``dvc repro <its stage>``, which saves the cell in the shared cache and its run cache; their
MLflow runs go to this clone's store. Then ``dvc repro`` here restores every cell from the run
cache ("is cached - skipping run") and writes the report.

Threads: on a CPU, N workers on one thread each beat one worker on N threads at these model
sizes (README: the measured speedup). Logs: ``.dvc/tmp/workers/w<i>.log``.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import threading
import time
from pathlib import Path

from pipeline.ops.grid import targets
from pipeline.ops.worktree import (
    cache_dir,
    collect,
    dvc,
    forget,
    on_path,
    prepare_worktree,
    run,
    run_upstream,
    upstream_stages,
)
from pipeline.project import Project
from pipeline.stage import StageError, run_stage
from pipeline.tracking import Client, check_store, experiment_id, tracking_uri
from pipeline.train.cell_run import EXPERIMENT

HOME = Path(".dvc/tmp/workers")


def worker_env(threads: int) -> dict[str, str]:
    env = on_path()
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["MLFLOW_TRACKING_URI"] = tracking_uri()  # this clone's store (or the team's server)
    env.pop("PYTHONPATH", None)  # each worktree imports its own copy of the code
    return env


def train(root: Path, todo: list[str], n: int, threads: int) -> None:
    """Every target in ``todo`` trained by ``n`` workers, each taking the next one."""
    cache, jobs = cache_dir(root), queue.Queue()
    for t in todo:
        jobs.put(t)
    failed: list[str] = []
    done = [0]
    lock = threading.Lock()
    start = time.monotonic()

    def work(i: int) -> None:
        where = root / HOME / f"w{i}"
        log = root / HOME / f"w{i}.log"
        env = worker_env(threads)
        while not failed:
            try:
                target = jobs.get_nowait()
            except queue.Empty:
                return
            t0 = time.monotonic()
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"\n=== dvc repro {target}\n")
                f.flush()
                code = subprocess.call(dvc("repro", target), cwd=where, env=env, stdout=f, stderr=f)
            with lock:
                if code != 0:
                    failed.append(f"{target} (worker {i}, see {log.relative_to(root)})")
                    return
                done[0] += 1
                print(
                    f"[{done[0]}/{len(todo)}] {target}: {time.monotonic() - t0:.0f} s on "
                    f"worker {i} ({time.monotonic() - start:.0f} s in)",
                    flush=True,
                )

    check_store()
    experiment_id(Client(), EXPERIMENT)  # the store made once here: workers racing to make it fail
    (root / HOME).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        prepare_worktree(root, root / HOME / f"w{i}", cache)
    threads_ = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join()
    if failed:
        raise StageError(f"{failed[0]}: its dvc repro failed; fix it and run again")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-j", "--jobs", type=int, default=2, help="workers (default 2)")
    ap.add_argument("--threads", type=int, help="threads per worker (default: cores / jobs)")
    ap.add_argument(
        "--collect",
        action="store_true",
        help="train nothing here: after workers elsewhere (a SLURM array, other machines), "
        "restore every cell from the run cache and write the report",
    )
    ap.add_argument("--pull", action="store_true", help="with --collect: dvc repro --pull")
    a = ap.parse_args(argv)
    if a.pull and not a.collect:
        ap.error("--pull goes with --collect")
    if a.jobs < 1 or (a.threads is not None and a.threads < 1):
        ap.error("-j and --threads take a positive number")
    project = Project.load()
    root, layout, params = project.root, project.layout, project.params
    jobs = a.jobs
    if jobs > 1 and run(["git", "rev-parse", "--verify", "-q", "HEAD"], root).returncode != 0:
        print("note: not a git clone with a commit, which worktrees need: one dvc repro")
        jobs = 1
    todo = targets(params.grid, params.seeds, params.design)
    if a.collect:
        return collect(root, todo, a.pull)
    if jobs > 1:
        run_upstream(root, upstream_stages(layout))
        threads = a.threads or max(1, (os.cpu_count() or 1) // jobs)
        print(f"{len(todo)} cells, {jobs} workers on {threads} thread(s) each", flush=True)
        train(root, todo, jobs, threads)
        forget(root, todo)
    return subprocess.call(dvc("repro"), cwd=root, env=on_path())


if __name__ == "__main__":
    run_stage(main)
