"""The scaffolding of the cluster tests (test_cluster*.py): a throwaway project in a git clone
with DVC, ``python -m pipeline.cluster`` run in it, and readers of what a submission leaves.
Not a test module."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import yaml
from _project import TINY, env_for, run_module
from _runcache import committed_project

TINY_TRAIN = {**TINY["train"], "device": "cpu"}  # 12 steps, an eval every 6
CELL_DIR = "experiments/ablation/rope-false_moe-false_fgram-false_tokenizer-char_seed-{}"
TIMING = ("tokens_per_sec", "wall_s")


def git_project(root: Path, overrides: dict) -> Path:
    """A throwaway project in a git clone (tasks make git worktrees of it) with DVC."""
    root.mkdir(parents=True, exist_ok=True)
    return committed_project(root, {"train": TINY_TRAIN, **overrides})


def cluster(root: Path, *args: str, env: dict | None = None, timeout: float = 600):
    env = {**(env or env_for(root)), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cluster", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def cell_outputs(root: Path, seed: int) -> tuple[dict, str]:
    """The dense cell's figures and curve, less its timing and its ``variant``: a name, which
    depends on the grid it trained in (``abspos`` in a rope grid, every switch spelled in a
    grid of one cell), not on what it computed."""
    folder = root / CELL_DIR.format(seed)
    metrics = json.loads((folder / "metrics.json").read_text())
    kept = {k: v for k, v in metrics.items() if k not in (*TIMING, "variant")}
    return kept, (folder / "curve.csv").read_text()


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


def set_seeds(root: Path, seeds: list[int], fgram: list[bool] | None = None) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seeds"] = seeds
    if fgram is not None:
        params["grid"]["fgram"] = fgram
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run_module(root, "pipeline.grid").returncode == 0
