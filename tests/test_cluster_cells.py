"""``python -m pipeline.cluster`` on a real one-node SLURM, beyond the grid itself: a cell that
fails (status names why; --resubmit-failed sends it alone), a cell cancelled with scancel
(not requeued), the tuner's workers as an array on one PostgreSQL study, and every bad input
in one line. (The grid and preemption: test_cluster.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from _cluster import cell_log, cluster, git_project, job_of, set_seeds, status
from _project import env_for, make_project, run_module
from _runcache import GRID
from _slurm import scontrol
from _wait import wait_for
from optuna.trial import TrialState


@pytest.fixture(scope="module")
def single(slurm, tmp_path_factory):
    """A project of one dense cell per submission (seeds and F-grams set per test)."""
    grid = {"rope": [False], "moe": [False], "fgram": [False], "tokenizer": ["char"]}
    return git_project(tmp_path_factory.mktemp("cells"), {"grid": grid, "seeds": [1337]})


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    """A project that no bad submission may change."""
    return git_project(tmp_path_factory.mktemp("idle"), {"grid": GRID})


def test_a_cell_cancelled_with_scancel_is_not_requeued(single):
    """scancel sends SIGTERM too, but a cancelled job must stay cancelled. Kills: a task that
    requeues itself on every SIGTERM (the job would be pending again)."""
    set_seeds(single, [1342])
    out = cluster(single, "submit", env={**env_for(single), "NANOMOE_FAULT": "pause@5"})
    assert out.returncode == 0, out.stderr[-3000:]
    job, log = job_of(single), cell_log(single, "train@false-false-false-char-1342")
    wait_for(lambda: log.exists() and "paused after step 5" in log.read_text(), 180)
    subprocess.run(["scancel", job], check=True)
    wait_for(lambda: " running " not in status(single), 60, "the cancelled task to end")
    # the task requeues (or not) before it exits: a requeued job would show as pending now
    shown = status(single)
    assert " failed " in shown and "CANCELLED" in shown, shown
    task_log = single / ".dvc/tmp/cluster/logs" / f"{job}_0.log"
    assert "not requeued by this task (cancelled with scancel)" in task_log.read_text()


def test_status_shows_a_failed_cell_with_its_line_and_resubmit_trains_only_it(single):
    """The F-gram cell's table is gone from the shared cache (a broken cache: the cell's own
    input): its task fails it with DVC's line, the dense cell is done. Restored,
    ``--resubmit-failed`` sends that cell alone. Kills: status without the log's line; a
    resubmit that sends every cell (two tasks) or none."""
    set_seeds(single, [1337], fgram=[False, True])
    out = cluster(single, "submit", "--sbatch-arg=--hold")
    assert out.returncode == 0, out.stderr[-3000:]
    lock = yaml.safe_load((single / "dvc.lock").read_text())
    outs = lock["stages"]["mine_fgrams@char"]["outs"]
    (md5,) = [o["md5"] for o in outs if o["path"] == "data/char/fgrams.json"]
    obj = single / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    moved = obj.with_suffix(".away")
    obj.rename(moved)
    scontrol("release", job_of(single))
    fgram = "train_fgram@false-false-true-char-1337"
    wait_for(lambda: " pending " not in status(single) and " running " not in status(single), 240)
    shown = status(single)
    print(shown)
    row = next(line for line in shown.splitlines() if line.startswith(fgram))
    assert (
        " failed " in row and "Checkout failed for following targets: data/char/fgrams.json" in row
    )
    assert shown.splitlines()[-1] == "2 cells: 1 done, 1 failed"
    moved.rename(obj)
    again = cluster(single, "submit", "--resubmit-failed", "--wait", "--poll", "1")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resubmitted 1 cell(s) as job {job_of(single)}: {fgram}" in again.stdout
    record = json.loads((single / ".dvc/tmp/cluster/run.json").read_text())
    assert record["jobs"][-1]["tasks"] == [[fgram]]
    assert status(single).splitlines()[-1] == "2 cells: 2 done"


def test_tuner_workers_as_an_array_end_with_exactly_n_trials(slurm, postgres, tmp_path):
    """Two tuner workers, one study in PostgreSQL, --trials 6. Kills: workers that each run
    N trials (12), or a study made by each worker (two studies)."""
    from _tune import TUNE
    from _tune import make_project as tune_project

    root = tune_project(tmp_path / "tune", data=False)
    env = env_for(root)
    assert run_module(root, "dvc", "init", "--no-scm", "-q", env=env).returncode == 0
    url = postgres.create_database("cluster_tune")
    out = cluster(root, "tune", "--trials", "6", "--workers", "2", "--storage", url,
                  "--wait", "--poll", "1")  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name=TUNE["study_name"], storage=url)
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 6, [t.state for t in study.trials]
    logs = list((root / ".dvc/tmp/cluster/tune/logs").glob("worker-*.log"))
    assert len(logs) == 2


def test_a_journal_file_is_refused_for_the_tuner_on_a_cluster(tmp_path):
    root = make_project(tmp_path)
    out = cluster(root, "tune", "--trials", "4", "--workers", "2", "--storage", "j.log")
    assert out.returncode == 2 and out.stderr.startswith("error: --storage: j.log is not for")
    assert len(out.stderr.strip().splitlines()) == 1


BAD = {
    "no-sbatch": ([], "error: sbatch: not found on PATH"),
    "unknown-partition": (["--partition", "nope"], "error: sbatch: SLURM refused the job"),
    "gres-without-gpus": (["--gres", "gpu:1"], "Invalid generic resource"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_a_bad_submission_is_one_line_and_queues_and_runs_nothing(slurm, idle, case):
    """Kills: the sbatch --test-only check moved after the upstream stages (data/raw would
    exist); a refusal printed as a traceback."""
    root = idle
    args, said = BAD[case]
    env = env_for(root)
    if case == "no-sbatch":
        env["PATH"] = str(Path(sys.executable).parent)  # python, no sbatch
    out = cluster(root, "submit", *args, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], lines
    assert not (root / "data" / "raw").exists()
    assert not (root / ".dvc/tmp/cluster/run.json").exists()


def test_a_controller_that_does_not_answer_is_one_line(slurm, idle, tmp_path):
    conf = Path(slurm).read_text()
    dead = re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=9", conf)
    (tmp_path / "slurm.conf").write_text(dead)
    root = idle
    env = {**env_for(root), "SLURM_CONF": str(tmp_path / "slurm.conf")}
    out = cluster(root, "submit", env=env)
    assert out.returncode == 2 and out.stderr.startswith("error: slurmctld: not answering")
    assert len(out.stderr.strip().splitlines()) == 1
