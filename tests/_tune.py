"""The scaffolding of the tuner's tests (test_tune*.py, test_tracking_server.py): a throwaway
project with tiny settings, ``python -m pipeline.tune`` run in it as a subprocess or in this
process, and readers of the study and the MLflow runs it leaves. Not a test module: any test
may import it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.tracking._tracking_service.utils as mlflow_uri
import mlflow.tracking.fluent as mlflow_fluent
import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from nanomoe.data import CharTokenizer, prepare
from nanomoe.fgram import mine_fgrams, save_fgrams
from pipeline.stage import run_stage as cli_run
from pipeline.tune import cli as tune
from pipeline.tune import storage as tune_storage

REPO = Path(__file__).resolve().parents[1]
WORDS = "the cat sat on a mat and then that dog ran there — café naïve".split()
TINY = {
    "model": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
    "moe": {"n_experts": 2, "top_k": 1},
    "fgram": {"mine_max_n": 4, "min_count": 2, "max_fgrams": 64, "max_n": 3, "n_head": 2},
    "train": {
        "batch_size": 4,
        "max_iters": 20,
        "warmup_iters": 2,
        "eval_interval": 10,
        "eval_iters": 2,
        "device": "cpu",
    },
}
TUNE = {
    "study_name": "nanomoe-tune",
    "rungs": [5, 10],  # and the top, train.max_iters = 20
    "reduction_factor": 2,
    "finalists": 1,
    "eval_iters": 2,
    "space": {
        "n_experts": [2, 4],
        "fgram_max_n": [2, 4],
        "top_k": [1, 2],
        "learning_rate": [0.001, 0.01],
    },
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# --- a throwaway project ---------------------------------------------------------------------


def corpus() -> str:
    rng = np.random.default_rng(7)
    return "\n".join(" ".join(rng.choice(WORDS, size=6)) for _ in range(150)) + "\n"


def make_project(
    root: Path, tune_overrides: dict | None = None, data: bool = True, train: dict | None = None
) -> Path:
    """params.yaml with tiny settings (``train`` overriding TINY's), dvc.yaml, the corpus;
    with ``data``, the prepared splits and mined F-grams too (written directly, as the DVC
    stages would)."""
    text = corpus()
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["url"] = str(root / "corpus.txt")
    params["data"]["sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for section, values in TINY.items():
        params[section].update(values)
    params["train"].update(train or {})
    params["tune"] = {**TUNE, **(tune_overrides or {})}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    if data:
        meta = prepare(text, root / "data" / "prepared", params["data"]["val_fraction"])
        ids = np.array(CharTokenizer(meta["chars"]).encode(text[: meta["n_train"]]))
        f = params["fgram"]
        grams = mine_fgrams(ids, meta["vocab_size"], f["mine_max_n"], f["min_count"], 64)
        save_fgrams(root / "data" / "fgrams.json", grams, meta["chars"], {"mine_max_n": 4})
    return root


def env_for(root: Path) -> dict[str, str]:
    """No outside MLflow store, DVC root or data mirror; this interpreter first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.pop("NANOMOE_DATA_URL", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"  # tiny models; two workers on two cores must not fight
    return env


def one_job(args: tuple[str, ...]) -> list[str]:
    """One worker per command unless a test asks for more: counts and timings stay simple."""
    return [*args, "--jobs", "1"] if "--jobs" not in args else list(args)


def tune_cmd(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m pipeline.tune args`` in ``root``, with ``env`` added to its environment."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.tune", *one_job(args)],
        cwd=root,
        env={**env_for(root), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_tune(
    root: Path, *args: str, log: str = "tune.out", env: dict | None = None
) -> subprocess.Popen:
    with open(root / log, "w") as out:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.tune", *one_job(args)],
            cwd=root,
            env={**env_for(root), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def open_study(root: Path, name: str = "nanomoe-tune") -> optuna.Study:
    storage = tune_storage.open_storage(None, root / "experiments" / "tune" / "journal.log")
    return optuna.load_study(study_name=name, storage=storage)


def finished(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=FINISHED)


def mlflow_runs(root: Path) -> tuple[list, list]:
    """(parent runs, trial runs) of experiment nanomoe-tune in the project's store."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-tune")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


@contextlib.contextmanager
def inside(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run ``tune.main`` in this process, inside the project ``root``, leaving no global
    trace. A test module's ``in_project`` fixture: ``with inside(make_project(tmp_path),
    monkeypatch) as root: yield root``."""
    monkeypatch.chdir(root)
    saved_env, saved_term = dict(os.environ), signal.getsignal(signal.SIGTERM)
    saved_threads = torch.get_num_threads()
    for key in [k for k in os.environ if k.startswith(("MLFLOW_", "DVC_"))]:
        monkeypatch.delenv(key)
    for module, name in ((mlflow_uri, "_tracking_uri"), (mlflow_fluent, "_active_experiment_id")):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    torch.set_num_threads(1)
    try:
        yield root
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        signal.signal(signal.SIGTERM, saved_term)
        torch.set_num_threads(saved_threads)


def assert_refused_in_one_line(root, monkeypatch, capsys, tune_overrides, key) -> None:
    """``--trials 2`` with these ``tune:`` settings exits 2 with one line naming ``key``,
    before any storage or trial exists."""
    make_project(root, tune_overrides, data=False)
    monkeypatch.setattr(sys, "argv", ["pipeline.tune", "--trials", "2"])
    with pytest.raises(SystemExit) as exit_info:
        cli_run(tune.main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: params.yaml: {key}")
    assert not (root / "experiments" / "tune").exists()  # no storage, no trial
