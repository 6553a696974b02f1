"""The scaffolding of the tuner's tests (test_tune*.py, test_tracking_server.py): a throwaway
project with tiny settings, ``python -m pipeline.tune`` run in it as a subprocess or in this
process, and readers of the study and the MLflow runs it leaves. Not a test module: any test
may import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import _project as project
import mlflow
import mlflow.tracking._tracking_service.utils as mlflow_uri
import mlflow.tracking.fluent as mlflow_fluent
import numpy as np
import optuna
import psutil
import pytest
import torch
import yaml
from _wait import wait_for
from optuna.trial import TrialState

from nanomoe.data import CharTokenizer, prepare
from nanomoe.fgram import mine_fgrams, save_fgrams
from nanomoe.tokenizer import text_sha256, tokenizer_text
from pipeline.stage import run_stage as cli_run
from pipeline.tune import cli as tune
from pipeline.tune import storage as tune_storage

REPO = Path(__file__).resolve().parents[1]
WORDS = "the cat sat on a mat and then that dog ran there — café naïve".split()
TINY = {
    # the tuner trains grid.tokenizer's last level: char, whatever the repo's grid holds
    "grid": {"tokenizer": ["char"]},
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
    """The throwaway project of tests/_project.py with this module's corpus, tiny settings
    (``train`` overriding TINY's) and tune: section; with ``data``, the char tokenizer's
    data too: data/char/tokenizer.json, prepared/ and fgrams.json (written directly, as the
    DVC stages tokenizer@char, prepare@char and mine_fgrams@char would)."""
    text = corpus()
    overrides = {
        **TINY,
        "train": {**TINY["train"], **(train or {})},
        "tune": {**TUNE, **(tune_overrides or {})},
    }
    project.make_project(root, text, overrides)
    if data:
        write_char_data(root, text)
    return root


def write_char_data(root: Path, text: str) -> None:
    """data/char/ for the one text ``text``: the tokenizer file, the prepared splits with
    the meta.json pipeline/data/prepare.py writes (the tokenizer file's sha256, each split's
    characters and UTF-8 bytes), and the F-grams mined from the train split."""
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    tok = CharTokenizer.from_text(text)  # one text: no end-of-document token
    tok_text = tokenizer_text(tok)
    data = root / "data" / "char"
    data.mkdir(parents=True, exist_ok=True)
    (data / "tokenizer.json").write_text(tok_text, encoding="utf-8")
    prepared = data / "prepared"
    split = prepare(text, prepared, params["data"]["val_fraction"])  # the ids, nanoGPT's cut
    assert split["chars"] == tok.chars
    n = split["n_train"]
    texts = {"train": text[:n], "val": text[n:]}
    meta = {
        "tokenizer": "char",
        "tokenizer_sha256": text_sha256(tok_text),
        "vocab_size": tok.vocab_size,
        "chars": tok.chars,
        "dtype": split["dtype"],
        "n_train": split["n_train"],
        "n_val": split["n_val"],
        "text": {k: {"chars": len(t), "bytes": len(t.encode("utf-8"))} for k, t in texts.items()},
    }
    (prepared / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    ids = np.array(tok.encode(texts["train"]))
    f = params["fgram"]
    grams = mine_fgrams(ids, tok.vocab_size, f["mine_max_n"], f["min_count"], 64)
    save_fgrams(data / "fgrams.json", grams, tok, {"mine_max_n": f["mine_max_n"]})


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


# --- handing every worker a trial ------------------------------------------------------------


def waiting_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked waiting for a file lock (Linux's /proc/locks lists
    each waiter on a line ``N: -> FLOCK ADVISORY WRITE <pid> ...``)."""
    locks = Path("/proc/locks")
    if not locks.exists():
        pytest.skip("no /proc/locks: cannot see a worker wait for the claim lock")
    return any(
        f[1:2] == ["->"] and f[5:6] == [str(pid)]
        for f in (line.split() for line in locks.read_text().splitlines())
    )


class TrialGate:
    """Makes each tune worker of a test start a trial, however fast the others run.

    The test holds the lock the workers claim trials under (``local_lock`` on
    experiments/tune/tune.lock; they also take it once to open the study) from before they
    start, and lets one worker through at a time: ``one_trial(pid)`` releases the lock until
    ``pid`` owns a trial, then takes it back; ``park(pid)`` waits until ``pid`` blocks on the
    lock again (its trials done) and stops it there with SIGSTOP, so that it claims nothing
    more until ``open()``. A worker is only ever stopped while it waits for that lock, the
    outermost one: it holds no journal lock, database transaction or RUNNING trial meanwhile.
    ``owners()``: the pids that own a trial, in any state (once seen, always seen: a poll
    cannot miss a short trial); ``check()`` fails the test (with the logs) if a worker died.

    A worker may claim more than one trial before the test takes the lock back (a trial
    ends between two polls); the next worker's turn then fails, loudly, only if those took
    every trial of the study."""

    def __init__(self, root: Path, owners, check) -> None:
        path = root / "experiments" / "tune" / "tune.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = tune_storage.FlockLock(str(path))
        self.lock.acquire()
        self.owners, self.check = owners, check
        self.stopped: set[int] = set()

    def wait(self, predicate, what: str):
        """``wait_for(predicate)``, failing at once if a worker died."""

        def checked():
            self.check()
            return predicate()

        return wait_for(checked, what=what)

    def at_the_lock(self, *pids: int) -> None:
        for pid in pids:
            self.wait(lambda pid=pid: waiting_for_a_lock(pid), f"{pid} at the claim lock")

    def stop(self, *pids: int) -> None:
        """Stop workers that wait for the lock (``at_the_lock``), and wait until they have
        stopped: a signal lands after kill() returns, and a worker still waiting when the
        test lets the lock go would take it, then stop holding it."""
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            self.stopped.add(pid)
            self.wait(lambda pid=pid: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
                      f"{pid} to stop")  # fmt: skip

    def release(self) -> None:
        self.lock.release()

    def hold(self) -> None:
        self.lock.acquire()

    def one_trial(self, pid: int) -> None:
        if pid in self.stopped:
            os.kill(pid, signal.SIGCONT)
            self.stopped.discard(pid)
        self.release()
        self.wait(lambda: pid in self.owners(), f"{pid} to start a trial")
        self.hold()

    def park(self, pid: int) -> None:
        self.at_the_lock(pid)
        self.stop(pid)

    def open(self) -> None:
        """Every stopped worker goes on, and the lock is free: the workers run as they will."""
        for pid in self.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped.clear()
        if self.lock.fd is not None:
            self.release()

    def __enter__(self) -> TrialGate:
        return self

    def __exit__(self, *exc) -> None:
        self.open()  # also when the test failed: no worker is left stopped


def trial_owners(study: optuna.Study | None) -> set[int]:
    """The pids that own a trial of ``study``, in any state (none while it does not exist)."""
    trials = study.get_trials(deepcopy=False) if study else []
    return {t.user_attrs["owner"]["pid"] for t in trials if "owner" in t.user_attrs}
