"""A throwaway copy of the project with a tiny corpus and tiny params, for pipeline tests."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Not Shakespeare, not ASCII: nothing in the project may assume either.
CORPUS = (
    "Il était une fois — un café, déjà fermé.\n"
    "The quick brown fox jumps over the lazy dog; the dog sleeps.\n"
    "Ωμέγα and ℵ-null walk into a bar: ☕ is served.\n"
) * 40

TINY = {
    "seeds": [1337],  # not the repo's, which an experiment may have edited
    "model": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
    "moe": {"n_experts": 2, "top_k": 1},
    "fgram": {"mine_max_n": 4, "min_count": 2, "max_fgrams": 64, "max_n": 3},
    "train": {"batch_size": 4, "max_iters": 12, "eval_interval": 6, "eval_iters": 2},
    "sample": {"tokens": 16},
}


def make_project(root: Path, corpus: str = CORPUS, overrides: dict | None = None) -> Path:
    """Copy code and config into ``root``, write the corpus, point params at it."""
    for name in ("nanomoe", "pipeline"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / name, root / name, ignore=ignore, dirs_exist_ok=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    (root / "corpus.txt").write_text(corpus, encoding="utf-8")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["url"] = (root / "corpus.txt").as_uri()
    params["data"]["sha256"] = hashlib.sha256(corpus.encode("utf-8")).hexdigest()
    for section, values in {**TINY, **(overrides or {})}.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    return root


def env_for(root: Path, bytecode: bool = True) -> dict[str, str]:
    """The test's interpreter first on PATH (dvc runs `python -m ...`), no outside store.
    ``bytecode``: Python writes __pycache__/ beside the code it imports, as it does on a
    user's machine (this workplace sets PYTHONDONTWRITEBYTECODE, which hid what bytecode
    did to DVC's hashes of the code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(root)
    env.pop("NANOMOE_DATA_URL", None)
    return env


def run_module(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=root,
        env=env or env_for(root),
        capture_output=True,
        text=True,
        timeout=600,
    )


def tail(proc: subprocess.CompletedProcess, n: int = 3000) -> str:
    """A finished command's exit code and the ends of its output, for an assertion message."""
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-n:]}\n--- stderr\n{proc.stderr[-n:]}"


def git(root: Path, *args: str) -> str:
    """``git args`` in ``root``; its stdout, asserting it succeeded."""
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout
