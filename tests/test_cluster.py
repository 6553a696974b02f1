"""``python -m pipeline.cluster`` on a real one-node SLURM (tests/_slurm.py): the grid as an
array job, preemption both ways, a failed cell resubmitted alone, the tuner's workers, and
every bad input in one line. No mock of SLURM: sbatch, squeue and scontrol are the real ones.

SLURM holds a requeued job for about two minutes before it may start again (its BeginTime);
the preemption tests move that to now with ``scontrol update StartTime=now``, as an admin may.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from _project import TINY, env_for, make_project, run_module
from _slurm import scontrol
from _wait import wait_for
from optuna.trial import TrialState

GRID = {"rope": [False, True], "moe": [False, True], "fgram": [False], "tokenizer": ["char"]}
TINY_TRAIN = {**TINY["train"], "device": "cpu"}  # 12 steps, an eval every 6
CELL_DIR = "experiments/ablation/rope-false_moe-false_fgram-false_tokenizer-char_seed-{}"
TIMING = ("tokens_per_sec", "wall_s")


def git_project(root: Path, overrides: dict) -> Path:
    """A throwaway project in a git clone (tasks make git worktrees of it) with DVC."""
    root.mkdir(parents=True, exist_ok=True)
    make_project(root, overrides={"train": TINY_TRAIN, **overrides})
    env = env_for(root)
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        assert subprocess.run(cmd, cwd=root, env=env, capture_output=True).returncode == 0
    assert run_module(root, "pipeline.grid").returncode == 0
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True, capture_output=True)
    return root


def cluster(root: Path, *args: str, env: dict | None = None, timeout: float = 600):
    env = {**(env or env_for(root)), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cluster", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def cell_outputs(root: Path, seed: int) -> tuple[dict, str]:
    folder = root / CELL_DIR.format(seed)
    metrics = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING}, (folder / "curve.csv").read_text()


def table(root: Path, skip: tuple[str, ...] = ("run_id", *TIMING)) -> list[dict]:
    with open(root / "experiments" / "ablation.csv") as f:
        return [{k: v for k, v in row.items() if k not in skip} for row in csv.DictReader(f)]


def cell_runs(root: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-ablation")
    return client.search_runs([exp.experiment_id], "tags.kind = 'cell'", max_results=100)


def job_of(root: Path) -> str:
    return json.loads((root / ".dvc/tmp/cluster/run.json").read_text())["jobs"][-1]["id"]


def cell_log(root: Path, target: str) -> Path:
    return root / ".dvc/tmp/cluster/logs" / f"{target}.log"


def status(root: Path) -> str:
    out = cluster(root, "status")
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def grid(slurm, tmp_path_factory):
    """The tiny grid (rope x moe, 2 seeds: 8 cells, 2 a task) through ``submit --wait``, and
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
        f"\ntiny grid, 8 cells: SLURM submit --wait {slurm_s:.0f} s; local workers {local_s:.0f} s"
    )
    return on_slurm, local, submitted.stdout


def test_submit_wait_trains_every_cell_once_in_a_task_and_reports_as_a_local_run(grid):
    """Kills: tasks that skip the run cache or train twice (a cell log without its one
    'Running stage'); a collect that retrains (a ninth cell run); a report that differs from
    the local run's (a task on other threads, params or data than the clone's)."""
    on_slurm, local, out = grid
    assert re.search(r"submitted job \d+: 8 cells in 4 task\(s\)", out)  # 2 a task
    assert len(re.findall(r"^\[\d/8\] \S+: done", out, flags=re.M)) == 8
    assert "all 8 cells done; collecting" in out
    logs = sorted((on_slurm / ".dvc/tmp/cluster/logs").glob("train*.log"))
    assert len(logs) == 8
    for log in logs:  # each cell trained by its task, once
        assert log.read_text().count("Running stage 'train") == 1, log.name
    assert out.count("is cached - skipping run") >= 8  # collect restored, trained nothing
    assert "Running stage 'train" not in out
    assert len(cell_runs(on_slurm)) == 8 and {r.info.status for r in cell_runs(on_slurm)} == {
        "FINISHED"
    }
    assert table(on_slurm) == table(local)  # final losses to the last bit
    summary = [json.loads((r / "experiments/summary.json").read_text()) for r in grid[:2]]
    assert summary[0]["effects"] == summary[1]["effects"]
    assert status(on_slurm).splitlines()[-1] == "8 cells: 8 done"


def test_collect_after_the_array_trains_nothing(grid):
    on_slurm = grid[0]
    out = cluster(on_slurm, "collect")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Running stage 'train" not in out.stdout and len(cell_runs(on_slurm)) == 8


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


def set_seeds(root: Path, seeds: list[int], fgram: list[bool] | None = None) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seeds"] = seeds
    if fgram is not None:
        params["grid"]["fgram"] = fgram
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run_module(root, "pipeline.grid").returncode == 0


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
def test_a_bad_submission_is_one_line_and_queues_and_runs_nothing(slurm, tmp_path, case):
    """Kills: the sbatch --test-only check moved after the upstream stages (data/raw would
    exist); a refusal printed as a traceback."""
    root = git_project(tmp_path, {"grid": GRID})
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


def test_a_controller_that_does_not_answer_is_one_line(slurm, tmp_path):
    conf = Path(slurm).read_text()
    dead = re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=9", conf)
    (tmp_path / "slurm.conf").write_text(dead)
    root = git_project(tmp_path / "p", {"grid": GRID})
    env = {**env_for(root), "SLURM_CONF": str(tmp_path / "slurm.conf")}
    out = cluster(root, "submit", env=env)
    assert out.returncode == 2 and out.stderr.startswith("error: slurmctld: not answering")
    assert len(out.stderr.strip().splitlines()) == 1
