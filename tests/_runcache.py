"""A tiny 2-cell project (moe off and on; RoPE on, F-grams off, characters) committed to git
with DVC, and
readers of its MLflow store and run.json files: for the run-cache tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
from _project import git, make_project, run_module, tail

GRID = {"rope": [True], "moe": [False, True], "fgram": [False], "tokenizer": ["char"]}
GITIGNORE = "__pycache__/\n/mlflow.db\n/mlartifacts/\n"
TRAINED = "Running stage 'train"


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, tail(proc)
    return proc


def committed_project(root: Path, overrides: dict | None = None) -> Path:
    """The tiny 2-cell project (or ``overrides``' settings) as a git repo with DVC, one
    commit, nothing trained."""
    make_project(root, overrides={"grid": GRID, **(overrides or {})})
    _ok(run_module(root, "pipeline.grid"))
    git(root, "init", "-q", "--initial-branch=main")
    git(root, "config", "user.name", "test")
    git(root, "config", "user.email", "test@example.com")
    _ok(run_module(root, "dvc", "init", "-q"))
    _ok(run_module(root, "dvc", "config", "core.analytics", "false"))
    (root / ".gitignore").write_text(GITIGNORE)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def cell_runs(root: Path, uri: str | None = None) -> dict[str, str]:
    """run id -> variant of every kind=cell run in the store."""
    client = mlflow.MlflowClient(uri or f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-ablation")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return {r.info.run_id: r.info.run_name for r in runs if r.data.tags.get("kind") == "cell"}


def run_ids(root: Path) -> dict[str, str]:
    """cell folder -> the run its run.json names."""
    found = (root / "experiments" / "ablation").glob("*/run.json")
    return {p.parent.name: json.loads(p.read_text())["run_id"] for p in found}


def summary_run(root: Path) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-ablation")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    return next(r for r in runs if r.data.tags.get("kind") == "ablation")
