"""A worker's copy of the project, for the commands that train cells away from the clone:
``pipeline.workers`` (N worktrees on one machine) and ``pipeline.cluster`` (one per SLURM task,
on the node's local disk).

A worktree is a git worktree of the clone's HEAD with the project's sources copied over (what
has not been committed too), no record of the train cells in its dvc.lock (so each cell is
looked up in the run cache, or trained), and the clone's DVC cache as its cache, so what one
worktree trains every other restores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from nanomoe.atomic import atomic_write_text
from pipeline.layout import CODE_DIRS, Layout
from pipeline.stage import StageError

SOURCES = ("dvc.yaml", "params.yaml", ".dvcignore")  # besides CODE_DIRS and dvc.lock


def run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, **kw)


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def on_path(env: dict[str, str] | None = None, python: str = sys.executable) -> dict[str, str]:
    """``env`` (default: this process's) with ``python``'s folder first on PATH: DVC runs each
    stage's ``python -m ...`` through PATH, and must find the project's venv there."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def upstream_stages(layout: Layout) -> list[str]:
    """The stages before the train cells (download and each tokenizer's data stages): run
    once, in the clone, before any worker or task trains a cell."""
    return sorted(s for s in layout.stages if not s.startswith("train") and s != "report")


def run_upstream(root: Path, stages: list[str]) -> None:
    if subprocess.call(dvc("repro", *stages), cwd=root, env=on_path()) != 0:
        raise StageError(f"dvc.yaml: dvc repro {' '.join(stages)} failed; see above")


def collect(root: Path, todo: list[str], pull: bool = False) -> int:
    """Every cell in ``todo`` restored here from the run cache, and the report written
    (``dvc repro``, ``--pull`` from a DVC remote): its exit code."""
    forget(root, todo)
    return subprocess.call(dvc("repro", *(["--pull"] if pull else [])), cwd=root, env=on_path())


def cache_dir(root: Path) -> str:
    out = run(dvc("cache", "dir"), root)
    if out.returncode != 0:
        raise StageError(f".dvc/: not a DVC project ({out.stderr.strip()[:200]}); run dvc init")
    return out.stdout.strip()


def add_worktree(repo: Path, where: Path) -> None:
    """A detached git worktree of ``repo``'s HEAD at ``where`` (made once)."""
    if (where / ".git").exists():
        return
    shutil.rmtree(where, ignore_errors=True)
    made = run(["git", "worktree", "add", "-q", "--detach", "--force", str(where)], repo)
    if made.returncode != 0:
        raise StageError(
            f"{repo}: cannot add a git worktree ({made.stderr.strip()[:200]}); the "
            "workers need a git clone with a commit (or use WORKERS=1)"
        )


def copy_sources(source: Path, where: Path, lock: dict | None = None) -> None:
    """The code, params.yaml and dvc.yaml of ``source`` into ``where``; its dvc.lock is
    ``lock`` (None: none, so each cell is looked up in the run cache, or trained)."""
    for name in CODE_DIRS:
        shutil.rmtree(where / name, ignore_errors=True)
        shutil.copytree(source / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in SOURCES:
        if (source / name).exists():
            shutil.copy2(source / name, where / name)
        else:
            (where / name).unlink(missing_ok=True)
    (where / "dvc.lock").unlink(missing_ok=True)
    if lock is not None:
        dump = yaml.safe_dump(lock, sort_keys=False, allow_unicode=True)
        atomic_write_text(where / "dvc.lock", dump)


def use_cache(where: Path, cache: str, shared: bool = False) -> None:
    """``where`` keeps its DVC files in ``cache`` (``shared``: group-writable, as a cache that
    several users' tasks write must be: ``cache.shared group``)."""
    lines = ["[cache]", f"    dir = {cache}", *(["    shared = group"] if shared else [])]
    (where / ".dvc" / "config.local").write_text("\n".join(lines) + "\n")


def prepare_worktree(root: Path, where: Path, cache: str) -> None:
    """A worktree of ``root`` at ``where`` with ``root``'s sources and cache, no dvc.lock."""
    add_worktree(root, where)
    copy_sources(root, where)
    use_cache(where, cache)


def without_cells(lock: dict, todo: list[str]) -> dict:
    """``lock`` (dvc.lock's contents) less its record of the stages in ``todo``."""
    stages = lock.get("stages", {})
    return {**lock, "stages": {k: v for k, v in stages.items() if k not in todo}}


def read_lock(root: Path) -> dict:
    path = root / "dvc.lock"
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}


def forget(root: Path, todo: list[str]) -> None:
    """Drop dvc.lock's record of the cells in ``todo``, so that ``dvc repro`` looks them up in
    the run cache. With a record whose deps still match, DVC restores only the outputs that
    record names, and trains the cell again when they are not in the cache: a worker's run,
    whose metrics.json differs in ``wall_s`` if in nothing else, would never be found."""
    lock = read_lock(root)
    if any(t in lock.get("stages", {}) for t in todo):
        dump = yaml.safe_dump(without_cells(lock, todo), sort_keys=False, allow_unicode=True)
        atomic_write_text(root / "dvc.lock", dump)
