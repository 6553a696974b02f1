"""``python -m pipeline.tune --storage URL`` on a real PostgreSQL server (tests/_postgres.py):
workers that share one study through the database, a worker killed mid-trial, the heartbeats
that find a dead worker's trial where its process cannot be checked (another host), the
URL given through NANOMOE_TUNE_STORAGE, and the settings of all that in params.yaml.

Each test has its own database; the projects are the tiny ones of tests/_tune.py.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import psutil
import pytest
import sqlalchemy
from _tune import (
    TrialGate,
    assert_refused_in_one_line,
    finished,
    inside,
    make_project,
    mlflow_runs,
    start_tune,
    trial_owners,
)
from _wait import wait_for
from optuna.trial import TrialState

from pipeline.stage import run_stage as cli_run
from pipeline.tune import cli as tune
from pipeline.tune import command
from pipeline.tune import storage as tune_storage

ENV = command.STORAGE_ENV
PASSWORD = "s3cret-Pw"  # the server trusts local connections: any password is accepted
# Search trials train 40 steps after their first report at step 5: time to catch one.
LONG_SEARCH = {"rungs": [5, 40]}
LONG_TRAIN = {"max_iters": 60}


def storage_of(url: str) -> optuna.storages.BaseStorage:
    return tune_storage.open_storage(url, Path("unused.log"))


def load(storage: optuna.storages.BaseStorage) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name="nanomoe-tune", storage=storage)
    except KeyError:  # not created yet
        return None


def caught_mid_trial(storage, proc, log: Path):
    """A predicate for ``wait_for``: ``proc``'s RUNNING trials that reported a val bpb."""

    def mid_trial():
        assert proc.poll() is None, log.read_text()
        study = load(storage)
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if study else []
        mine = [t for t in trials if t.user_attrs.get("owner", {}).get("pid") == proc.pid]
        return [t for t in mine if t.intermediate_values]

    return mid_trial


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """A fresh project, to run ``tune.main`` in this process."""
    with inside(make_project(tmp_path), monkeypatch) as root:
        yield root


def trial_runs(root: Path) -> dict[int, list]:
    """MLflow's nested runs by the trial number they record."""
    runs: dict[int, list] = {}
    for r in mlflow_runs(root)[1]:
        runs.setdefault(int(r.data.tags["optuna.trial"]), []).append(r)
    return runs


def test_two_workers_and_a_killed_one_share_a_study_and_end_with_exactly_n(tmp_path, postgres):
    """The TrialGate hands each worker a trial in turn, the first one killed mid-trial, so
    both survivors provably train, whatever the machine's speed. Kills: the storage URL of
    NANOMOE_TUNE_STORAGE ignored (`a.storage = os.environ.get(STORAGE_ENV) or None` made
    `None`): the worker given the URL by the variable works in a journal file of its own."""
    url = postgres.create_database("shared")
    root = make_project(tmp_path, LONG_SEARCH, train=LONG_TRAIN)
    storage = storage_of(url)
    live: dict[str, subprocess.Popen] = {}

    def check() -> None:
        for log, proc in live.items():
            assert proc.poll() is None, (root / log).read_text()

    with TrialGate(root, lambda: trial_owners(load(storage)), check) as gate:
        # Three workers start at once on a new database, racing to create Optuna's tables.
        killed = live["killed.out"] = start_tune(
            root, "--trials", "6", "--storage", url, log="killed.out"
        )
        by_env = live["env.out"] = start_tune(root, "--trials", "6", log="env.out", env={ENV: url})
        by_flag = live["flag.out"] = start_tune(
            root, "--trials", "6", "--storage", url, log="flag.out"
        )
        gate.at_the_lock(killed.pid, by_env.pid, by_flag.pid)
        gate.stop(by_env.pid, by_flag.pid)
        gate.release()
        (dead, *_) = gate.wait(caught_mid_trial(storage, killed, root / "killed.out"), "a trial")
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        del live["killed.out"]
        gate.hold()
        gate.one_trial(by_env.pid)
        gate.park(by_env.pid)
        gate.one_trial(by_flag.pid)
    for w, log in ((by_env, "env.out"), (by_flag, "flag.out")):
        assert w.wait(timeout=300) == 0, (root / log).read_text()

    study = load(storage)
    done = finished(study)
    assert len(done) == 6 == len({t.number for t in done})
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert study.trials[dead.number].state == TrialState.FAIL
    assert {by_env.pid, by_flag.pid} <= {t.user_attrs["owner"]["pid"] for t in done}
    logs = (root / "env.out").read_text() + (root / "flag.out").read_text()
    assert logs.count(f"trial {dead.number:3d} failed: its process is gone") == 1

    runs = trial_runs(root)
    assert all(len(r) == 1 for r in runs.values())  # no trial trained twice
    ended = {n for n, (r,) in runs.items() if r.data.tags["state"] in ("complete", "pruned")}
    assert ended == {t.number for t in done}
    (dead_run,) = runs[dead.number]
    assert (dead_run.info.status, dead_run.data.tags["state"]) == ("FAILED", "failed")


def test_a_worker_gone_silent_is_failed_by_its_heartbeat_alone(
    in_project,
    postgres,
    monkeypatch,
    capsys,
):
    """As if the killed worker ran on another host: no process check, only the heartbeat."""
    url = postgres.create_database("heartbeat")
    quick_beats = {"reap_local_dead": False, "heartbeat_interval": 1, "heartbeat_grace": 3}
    make_project(in_project, {**LONG_SEARCH, **quick_beats}, data=False, train=LONG_TRAIN)
    first = start_tune(in_project, "--trials", "4", "--storage", url, log="first.out")
    storage = storage_of(url)
    (dead, *_) = wait_for(caught_mid_trial(storage, first, in_project / "first.out"))
    first.send_signal(signal.SIGKILL)
    first.wait()
    # A later worker, in this process; --timeout: it gives up, not hangs, if nothing reaps.
    monkeypatch.setenv(ENV, url)
    assert tune.main(["--trials", "4", "--jobs", "1", "--timeout", "60"]) == 0

    out = capsys.readouterr().out
    assert f"trial {dead.number:3d} failed: its heartbeat stopped" in out
    assert "its process is gone" not in out  # the same-host check is off
    study = load(storage)
    assert len(finished(study)) == 4
    assert study.trials[dead.number].state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    (dead_run,) = trial_runs(in_project)[dead.number]
    assert dead_run.info.status == "FAILED"
    assert dead_run.data.tags["note"] == "its heartbeat stopped"


def test_a_url_from_the_env_var_holds_the_study_with_the_heartbeats_of_params_unseen_by_ps(
    in_project,
    postgres,
    monkeypatch,
    capfd,
):
    """The database storage end to end, in this process: --jobs 2 starts a helper worker,
    which must get the URL, password included, through the environment alone."""
    make_project(in_project, {"heartbeat_interval": 7, "heartbeat_grace": 50}, data=False)
    url = postgres.create_database("secret").replace("postgres@", f"postgres:{PASSWORD}@")
    monkeypatch.setenv(ENV, url)
    opened, real_open = [], tune_storage.open_storage
    monkeypatch.setattr(
        tune_storage,
        "open_storage",
        lambda *a, **k: opened.append(real_open(*a, **k)) or opened[-1],
    )
    helpers: dict[int, tuple[list, dict]] = {}
    stop = threading.Event()

    def watch() -> None:  # what ps would show of the helper: its command line
        while not stop.wait(0.05):
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):  # it ended just now
                    cmdline = child.cmdline()
                    if "pipeline.tune" in cmdline:  # not still this process's, before exec
                        helpers[child.pid] = (cmdline, child.environ())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert tune.main(["--trials", "3", "--jobs", "2"]) == 0
    finally:
        stop.set()
        watcher.join()

    assert [(s.heartbeat_interval, s.grace_period) for s in opened] == [(7, 50)]
    ((cmdline, environ),) = helpers.values()
    assert "--storage" not in cmdline and not any(PASSWORD in arg for arg in cmdline)
    assert environ[ENV] == url
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err
    assert f"storage postgresql+psycopg://postgres:***@/secret?host={postgres.dir} " in out
    assert "(heartbeat every 7s, failed after 50s)" in out
    assert not (in_project / "experiments" / "tune" / "journal.log").exists()  # nor the helper's

    study = optuna.load_study(study_name="nanomoe-tune", storage=url)
    assert len(finished(study)) == 3 == len(study.trials)
    with sqlalchemy.create_engine(url).connect() as db:
        beat = db.execute(sqlalchemy.text("SELECT trial_id FROM trial_heartbeats")).scalars()
        assert set(beat) == {t._trial_id for t in study.trials}  # every trial beat
    (parent,), _ = mlflow_runs(in_project)
    assert PASSWORD not in str(parent.data.tags) + str(parent.data.params)


def test_a_bad_url_in_the_env_var_fails_in_one_line_without_its_password(
    in_project,
    postgres,
    monkeypatch,
    capsys,
):
    url = f"postgresql+psycopg://postgres:{PASSWORD}@/no_such_db?host={postgres.dir}"
    monkeypatch.setenv(ENV, url)
    monkeypatch.setattr(sys, "argv", ["pipeline.tune", "--trials", "2"])
    with pytest.raises(SystemExit) as exit_info:
        cli_run(tune.main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and PASSWORD not in err
    assert err.startswith("error: --storage postgresql+psycopg://postgres:***@/no_such_db")
    assert 'database "no_such_db" does not exist' in err


def test_the_storage_flag_wins_over_the_env_var_and_help_names_it(monkeypatch, capsys):
    url = f"postgresql+psycopg://postgres:{PASSWORD}@db.example/tune"
    monkeypatch.setenv(ENV, url)
    assert tune.parse_args(["--trials", "3"]).storage == url
    assert tune.parse_args(["--trials", "3", "--storage", "j.log"]).storage == "j.log"
    args, env = command.helper_args(tune.parse_args(["--trials", "3", "--seed", "5"]), "s")
    assert env == {ENV: url} and "--storage" not in args and "5" in args
    assert command.helper_args(tune.parse_args(["--trials", "3", "--storage", "j.log"]), "s") == (
        ["--trials", "3", "--study-name", "s", "--storage", "j.log"],
        {},
    )
    assert command.safe_url(url) == "postgresql+psycopg://postgres:***@db.example/tune"
    assert command.safe_url(url, f"refused {PASSWORD}") == "refused ***"  # an error message
    with pytest.raises(SystemExit):
        tune.parse_args(["--help"])
    assert "$NANOMOE_TUNE_STORAGE" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tune_overrides", "key"),
    [
        pytest.param({"heartbeat_interval": 0}, "tune.heartbeat_interval", id="interval-0"),
        pytest.param({"heartbeat_interval": 2.5}, "tune.heartbeat_interval", id="interval-float"),
        pytest.param({"heartbeat_grace": 20}, "tune.heartbeat_grace", id="grace-not-above"),
        pytest.param({"heartbeat_grace": "2m"}, "tune.heartbeat_grace", id="grace-text"),
        pytest.param({"reap_local_dead": "no"}, "tune.reap_local_dead", id="reap-not-bool"),
        pytest.param({"reap_local_dead": False}, "tune.reap_local_dead", id="reap-off-journal"),
    ],
)
def test_bad_heartbeat_settings_fail_at_once_in_one_line_naming_the_key(
    in_project,
    monkeypatch,
    capsys,
    tune_overrides,
    key,
):
    assert_refused_in_one_line(in_project, monkeypatch, capsys, tune_overrides, f"{key}: ")
