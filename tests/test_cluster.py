"""``python -m pipeline.cluster`` on a real one-node SLURM (tests/_slurm.py): the grid as an
array job against a local run of the same grid, and preemption both ways, each resumed bit
for bit. No mock of SLURM: sbatch, squeue and scontrol are the real ones. (The failed cell,
the tuner's workers and the bad inputs: test_cluster_cells.py.)

SLURM holds a requeued job for about two minutes before it may start again (its BeginTime);
the preemption tests move that to now with ``scontrol update StartTime=now``, as an admin may.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from _cluster import (
    cell_log,
    cell_outputs,
    cell_runs,
    cluster,
    git_project,
    job_of,
    set_seeds,
    status,
    table,
)
from _project import env_for, run_module
from _slurm import scontrol
from _wait import wait_for

# rope only (dense, characters): 2 cells a seed, 4 in all; the preemption tests compare
# their dense cells of seeds 1337 and 1338 with these
GRID = {"rope": [False, True], "moe": [False], "fgram": [False], "tokenizer": ["char"]}


@pytest.fixture(scope="module")
def grid(slurm, tmp_path_factory):
    """The tiny grid (rope, 2 seeds: 4 cells, 2 a task) through ``submit --wait``, and
    the same grid trained by two local workers (``make repro``'s way), threads matched."""
    base = tmp_path_factory.mktemp("cluster")
    overrides = {"grid": GRID, "seeds": [1337, 1338]}
    on_slurm, local = git_project(base / "slurm", overrides), git_project(base / "local", overrides)
    t0 = time.monotonic()
    submitted = cluster(on_slurm, "submit", "--cells-per-task", "2", "--wait", "--poll", "1")
    slurm_s = time.monotonic() - t0
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    t0 = time.monotonic()
    env = {**env_for(local), "OMP_NUM_THREADS": "1"}
    made = run_module(local, "pipeline.workers", "-j", "2", "--threads", "1", env=env)
    local_s = time.monotonic() - t0
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    print(
        f"\ntiny grid, 4 cells: SLURM submit --wait {slurm_s:.0f} s; local workers {local_s:.0f} s"
    )
    return on_slurm, local, submitted.stdout


def test_submit_wait_trains_every_cell_once_in_a_task_and_reports_as_a_local_run(grid):
    """Kills: tasks that skip the run cache or train twice (a cell log without its one
    'Running stage'); a collect that retrains (a fifth cell run); a report that differs from
    the local run's (a task on other threads, params or data than the clone's)."""
    on_slurm, local, out = grid
    assert re.search(r"submitted job \d+: 4 cells in 2 task\(s\)", out)  # 2 a task
    assert len(re.findall(r"^\[\d/4\] \S+: done", out, flags=re.M)) == 4
    assert "all 4 cells done; collecting" in out
    logs = sorted((on_slurm / ".dvc/tmp/cluster/logs").glob("train*.log"))
    assert len(logs) == 4
    for log in logs:  # each cell trained by its task, once
        assert log.read_text().count("Running stage 'train") == 1, log.name
    assert out.count("is cached - skipping run") >= 4  # collect restored, trained nothing
    assert "Running stage 'train" not in out
    assert len(cell_runs(on_slurm)) == 4 and {r.info.status for r in cell_runs(on_slurm)} == {
        "FINISHED"
    }
    assert table(on_slurm) == table(local)  # final losses to the last bit
    summary = [json.loads((r / "experiments/summary.json").read_text()) for r in grid[:2]]
    assert summary[0]["effects"] == summary[1]["effects"]
    assert status(on_slurm).splitlines()[-1] == "4 cells: 4 done"


def test_collect_after_the_array_trains_nothing(grid):
    on_slurm = grid[0]
    out = cluster(on_slurm, "collect")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Running stage 'train" not in out.stdout and len(cell_runs(on_slurm)) == 4


def test_the_upstream_stages_ran_once_in_the_submitting_process(grid):
    """Kills: tasks that run download/prepare again (the old recipe's per-task download):
    no task's cell log may show an upstream stage running."""
    on_slurm = grid[0]
    for log in (on_slurm / ".dvc/tmp/cluster/logs").glob("train*.log"):
        text = log.read_text()
        for stage in ("download", "tokenizer", "prepare", "mine_fgrams"):
            assert f"Running stage '{stage}" not in text, (log.name, stage)


@pytest.fixture(scope="module")
def single(slurm, tmp_path_factory):
    """A project of one dense cell per submission, for preemption and a failed cell."""
    grid = {"rope": [False], "moe": [False], "fgram": [False], "tokenizer": ["char"]}
    return git_project(tmp_path_factory.mktemp("single"), {"grid": grid, "seeds": [1337]})


def preempt(root: Path, seed: int, step: int, signal_it) -> str:
    """Submit the dense cell of ``seed`` paused after ``step``; ``signal_it(job)`` once it
    is there; let the requeued task start at once; wait until it is done. The cell's log."""
    set_seeds(root, [seed])
    target = f"train@false-false-false-char-{seed}"
    env = {**env_for(root), "NANOMOE_FAULT": f"pause@{step}"}
    out = cluster(root, "submit", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    job = job_of(root)
    log = cell_log(root, target)
    wait_for(lambda: log.exists() and f"paused after step {step}" in log.read_text(), 180)
    signal_it(job)
    wait_for(lambda: f"resumes at step {step} of 12" in status(root), 60, "the requeue")
    scontrol("update", f"jobid={job}_0", "StartTime=now")
    wait_for(lambda: " done " in status(root), 240, "the requeued task")
    assert cluster(root, "collect").returncode == 0
    return log.read_text()


def test_scontrol_requeue_mid_training_resumes_from_the_step_reached_bit_for_bit(grid, single):
    """SLURM signals the task (SIGTERM to all its processes) and queues it again. Kills: the
    train stage's SIGTERM save (it would resume from step 6, the last eval); a checkpoints
    folder a requeued task cannot find; any number that changes on resume."""
    text = preempt(single, 1337, 7, lambda job: scontrol("requeue", f"{job}_0"))
    assert "saved at step 7 of 12" in text and "resuming from step 7" in text
    assert cell_outputs(single, 1337) == cell_outputs(grid[1], 1337)


def test_scancel_term_to_the_batch_step_makes_the_task_requeue_itself(grid, single):
    """Only the batch step gets SIGTERM: the task forwards it to the cell and calls
    ``scontrol requeue`` itself. Kills: a task that does not forward the signal (the cell
    trains on to the end, no 'saved at step'); a task that does not requeue itself (the
    cell is failed, never done)."""

    def term(job: str) -> None:
        out = subprocess.run(["scancel", "--signal=TERM", "--batch", f"{job}_0"],
                             capture_output=True, text=True)  # fmt: skip
        assert out.returncode == 0, out.stderr

    text = preempt(single, 1338, 9, term)
    assert "saved at step 9 of 12" in text and "resuming from step 9" in text
    task_log = single / ".dvc/tmp/cluster/logs" / f"{job_of(single)}_0.log"
    assert "SIGTERM, checkpoint saved; requeued" in task_log.read_text()
    assert cell_outputs(single, 1338) == cell_outputs(grid[1], 1338)
