"""``python -m pipeline.tune``: the Optuna search over NanoMoE's MoE and F-gram settings.

Every test builds a throwaway project (tiny corpus, tiny model, 20-step trials) in a temp
folder and runs the command there, as a subprocess where processes matter (kill, parallel
workers, exit codes) and in-process elsewhere. MLflow's store lands in that folder.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import optuna
import psutil
import pytest
import yaml
from _tune import (
    FINISHED,
    TUNE,
    TrialGate,
    assert_refused_in_one_line,
    env_for,
    finished,
    inside,
    make_project,
    mlflow_runs,
    open_study,
    start_tune,
    trial_owners,
    tune_cmd,
)
from _wait import wait_for
from optuna.trial import TrialState

from pipeline.stage import run_stage as cli_run
from pipeline.tune import cli as tune
from pipeline.tune import storage as tune_storage
from pipeline.tune import workers as tune_workers
from pipeline.tune.ladder import Ladder
from pipeline.tune.objective import PruneOnEval
from pipeline.tune.report import PLOTS, pruning_saving


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """A fresh project, to run ``tune.main`` in this process."""
    with inside(make_project(tmp_path), monkeypatch) as root:
        yield root


# --- one study of 4 trials, with the upstream stages run by tune itself ----------------------


@pytest.fixture(scope="module")
def study_of_four(tmp_path_factory):
    """A project with code and DVC but no data: tune runs `dvc repro` and then 4 trials."""
    root = make_project(tmp_path_factory.mktemp("four"), data=False)  # code and dvc.yaml too
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"],
        cwd=root,
        env=env_for(root),
        check=True,
    )
    return root, tune_cmd(root, "--trials", "4")


def test_missing_data_is_brought_up_to_date_by_the_dvc_stages(study_of_four):
    """The tuner trains on grid.tokenizer's last level (char here): its tokenizer, prepared
    splits and F-grams, each brought up by its stage's char instance. Kills: check_inputs
    (pipeline/tune/session.py) handing ensure_upstream another level than tuned_levels'
    (mine_fgrams@bpe is run, and data/char/ is never made)."""
    root, proc = study_of_four
    assert proc.returncode == 0, proc.stderr
    assert "running dvc repro mine_fgrams@char" in proc.stdout
    data = root / "data" / "char"
    assert json.loads((data / "tokenizer.json").read_text())["kind"] == "char"
    assert json.loads((data / "prepared" / "meta.json").read_text())["tokenizer"] == "char"
    assert json.loads((data / "fgrams.json").read_text())["mine_max_n"] == 4
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {"tokenizer@char", "prepare@char", "mine_fgrams@char"} <= set(stages)


def test_study_ends_with_the_requested_finished_trials_and_writes_the_report(study_of_four):
    root, proc = study_of_four
    assert proc.returncode == 0, proc.stderr
    study = open_study(root)
    assert len(finished(study)) == 4 == len(study.trials)
    out = root / "experiments" / "tune"

    best = json.loads((out / "best.json").read_text())
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    top = min(complete, key=lambda t: t.value)
    assert (best["best_trial"], best["best_value"]) == (top.number, top.value)
    assert best["best_params"] == top.params
    assert set(best["best_params"]) == {"n_experts", "fgram_max_n", "top_k", "learning_rate"}

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    assert all(float(r["duration_s"]) > 0 and r["n_experts"] in ("2", "4") for r in rows)
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    progress = [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    assert len(progress) == 4 and all("best" in line for line in progress)
    assert "the ladder saved" in proc.stdout


def test_the_study_names_its_metric_val_bpb(study_of_four):
    """optuna-dashboard labels the study's value by its metric name. Kills: the
    ``study.set_metric_names(["val_bpb"])`` call in pipeline/tune/storage.py's open_study
    removed (the study's metric_names is then None)."""
    root, proc = study_of_four
    assert proc.returncode == 0, proc.stderr
    assert open_study(root).metric_names == ["val_bpb"]


def test_every_trial_records_the_steps_it_trained_and_the_saving_is_reported(study_of_four):
    root, _ = study_of_four
    trials = open_study(root).trials
    for t in trials:
        assert t.user_attrs["max_iters"] == 20
        expected = 20 if t.state == TrialState.COMPLETE else max(t.intermediate_values)
        assert t.user_attrs["steps"] == expected
    saving, run, full = pruning_saving(trials)
    assert full == 80 and run == sum(t.user_attrs["steps"] for t in trials)
    best = json.loads((root / "experiments" / "tune" / "best.json").read_text())
    assert best["pruning_saving"] == pytest.approx(saving)


def test_mlflow_holds_one_parent_run_and_a_nested_run_per_trial(study_of_four):
    """Each trial's run logs the val bpb the pruner was told at each eval, and a finished
    trial's final_val_bpb is its value. Kills: StudyRuns.end_trial logging the value as
    ``final_val_loss`` again (pipeline/tune/runs.py)."""
    root, _ = study_of_four
    parents, children = mlflow_runs(root)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.run_name == "nanomoe-tune" and parent.info.status == "FINISHED"
    assert parent.data.params["pruner"].startswith("successive halving over rungs 5, 10, 20")
    assert json.loads(parent.data.params["space.n_experts"]) == [2, 4]

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    status = {"complete": "FINISHED", "pruned": "KILLED"}
    by_number = {t.number: t for t in open_study(root).trials}
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        trial = by_number[int(run.data.tags["optuna.trial"])]
        assert run.data.tags["state"] == trial.state.name.lower()
        assert run.info.status == status[run.data.tags["state"]]
        assert run.data.params["n_experts"] == str(trial.params["n_experts"])
        history = client.get_metric_history(run.info.run_id, "val_bpb")
        assert {m.step: m.value for m in history} == pytest.approx(trial.intermediate_values)
        if trial.state == TrialState.COMPLETE:
            assert run.data.metrics["final_val_bpb"] == pytest.approx(trial.value)


def test_report_only_rebuilds_the_report_from_the_storage_alone(study_of_four):
    root, _ = study_of_four
    out = root / "experiments" / "tune"
    before = json.loads((out / "best.json").read_text())
    for name in ("best.json", "trials.csv", *PLOTS):
        (out / name).unlink()
    shutil.move(root / "data", root / "data.moved")  # the report needs no data
    try:
        proc = tune_cmd(root, "--report-only")
    finally:
        shutil.move(root / "data.moved", root / "data")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "best.json").read_text()) == before
    assert all((out / name).exists() for name in ("trials.csv", *PLOTS))


# --- interruptions and parallel workers ------------------------------------------------------


def test_killed_study_restarts_and_ends_with_exactly_the_requested_total(tmp_path):
    root = make_project(tmp_path, train={"max_iters": 60})
    proc = start_tune(root, "--trials", "4")

    def two_finished_and_one_training():
        assert proc.poll() is None, (root / "tune.out").read_text()  # still running
        try:
            study = open_study(root)
        except KeyError:  # not created yet
            return None
        trials = study.get_trials(deepcopy=False)
        training = [t for t in trials if t.intermediate_values and t.state == TrialState.RUNNING]
        return sum(t.state in FINISHED for t in trials) >= 2 and training

    wait_for(two_finished_and_one_training)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = open_study(root)
    survivors = {t.number: t.value for t in finished(killed)}
    (dead,) = [t for t in killed.trials if t.state == TrialState.RUNNING]
    assert dead.user_attrs["owner"]["pid"] == proc.pid

    again = tune_cmd(root, "--trials", "4")
    assert again.returncode == 0, again.stderr
    study = open_study(root)
    assert len(finished(study)) == 4
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert study.trials[dead.number].state == TrialState.FAIL
    assert {n: study.trials[n].value for n in survivors} == survivors  # kept, not rerun
    assert f"trial {dead.number:3d} failed: its process is gone" in again.stdout
    _, children = mlflow_runs(root)
    dead_run = [r for r in children if r.data.tags["optuna.trial"] == str(dead.number)]
    assert [(r.info.status, r.data.tags["state"]) for r in dead_run] == [("FAILED", "failed")]


def study_or_none(root: Path) -> optuna.Study | None:
    try:
        return open_study(root)
    except KeyError:  # not created yet
        return None


def alive(root: Path, procs: dict[str, subprocess.Popen]):
    """A check for TrialGate: every process in ``procs`` (log name -> process) still runs."""

    def check() -> None:
        for log, proc in procs.items():
            assert proc.poll() is None, (root / log).read_text()

    return check


def test_two_workers_on_one_storage_end_with_exactly_n_trials_and_one_parent_run(tmp_path):
    """Each worker starts a trial (TrialGate), so both share the study on any machine,
    however late the second one starts. Kills: create_study's load_if_exists=True made
    False in pipeline/tune/cli.py (the second worker is refused the study)."""
    root = make_project(tmp_path, train={"max_iters": 30})
    workers: dict[str, subprocess.Popen] = {}
    with TrialGate(root, lambda: trial_owners(study_or_none(root)), alive(root, workers)) as gate:
        for i in range(2):
            workers[f"worker{i}.out"] = start_tune(root, "--trials", "6", log=f"worker{i}.out")
        first, second = (w.pid for w in workers.values())
        gate.at_the_lock(first, second)
        gate.stop(second)
        gate.one_trial(first)
        gate.park(first)
        gate.one_trial(second)
    for log, w in workers.items():
        assert w.wait(timeout=300) == 0, (root / log).read_text()
    study = open_study(root)
    assert len(finished(study)) == 6
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    owners = {t.user_attrs["owner"]["pid"] for t in finished(study)}
    assert owners == {first, second}  # both did work

    parents, children = mlflow_runs(root)
    assert len(parents) == 1
    assert len(children) == 6
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == sorted(
        t.number for t in finished(study)
    )


def helper_of(main: subprocess.Popen) -> int | None:
    """The pid of the helper worker ``main`` started (``--jobs 2``); None if none."""
    children = psutil.Process(main.pid).children()
    return children[0].pid if children else None


def test_jobs_2_runs_two_workers_that_end_with_exactly_n_trials_and_one_report(tmp_path):
    """The helper starts a trial (TrialGate), however slowly it starts. Kills:
    start_helpers started with n=0 (`jobs - 1` made `0`): one worker runs the 9 trials."""
    root = make_project(tmp_path)
    procs: dict[str, subprocess.Popen] = {}
    with TrialGate(root, lambda: trial_owners(study_or_none(root)), alive(root, procs)) as gate:
        main = procs["tune.out"] = start_tune(root, "--trials", "9", "--jobs", "2")
        gate.at_the_lock(main.pid)
        gate.one_trial(main.pid)
        helper = helper_of(main)  # started before the main worker claims a trial
        assert helper is not None, (root / "tune.out").read_text()
        gate.park(main.pid)
        gate.one_trial(helper)
    assert main.wait(timeout=300) == 0, (root / "tune.out").read_text()
    out = (root / "tune.out").read_text()
    assert "2 workers of 1 thread(s) each" in out
    study = open_study(root)
    assert len(finished(study)) == 9 == len(study.trials)
    assert {t.user_attrs["owner"]["pid"] for t in study.trials} == {main.pid, helper}
    assert out.count("wall time") == 1  # one summary: the helper leaves it
    parents, children = mlflow_runs(root)
    assert len(parents) == 1 and len(children) == 9 and parents[0].info.status == "FINISHED"


def test_running_trial_of_a_dead_process_is_failed_and_a_live_one_kept(tmp_path):
    study = optuna.create_study(
        storage=tune_storage.open_storage(None, tmp_path / "journal.log"), study_name="s"
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owners = {
        "dead": {**tune_workers.this_owner(), "pid": gone.pid},
        "alive": tune_workers.this_owner(),
        "elsewhere": {**tune_workers.this_owner(), "host": "another-machine", "pid": gone.pid},
    }
    numbers = {}
    for name, owner in owners.items():
        trial = study.ask()
        trial.set_user_attr("owner", owner)
        numbers[name] = trial.number
    closed = []
    reaped = tune_workers.reap_dead_trials(study, lambda t, why: closed.append(t.number))
    assert [t.number for t in reaped] == closed == [numbers["dead"]]
    states = {name: study.trials[n].state for name, n in numbers.items()}
    assert states == {
        "dead": TrialState.FAIL,
        "alive": TrialState.RUNNING,
        "elsewhere": TrialState.RUNNING,  # another host: left to its heartbeat
    }


SEARCH_ONLY = Ladder((5, 10, 20), 2, 0, 2)  # no finalists: claiming is only the N count


def test_claims_stop_at_n_trials_and_a_surplus_trial_is_never_run():
    study = optuna.create_study()
    what, first = tune_workers.claim_trial(study, 2, SEARCH_ONLY)
    what2, second = tune_workers.claim_trial(study, 2, SEARCH_ONLY)
    assert (what, what2) == ("run", "run")
    assert tune_workers.claim_trial(study, 2, SEARCH_ONLY) == ("wait", None)  # 2 fill the 2
    study.tell(first, 1.0)
    study.tell(second, state=TrialState.FAIL)  # a crash frees its slot
    what, third = tune_workers.claim_trial(study, 2, SEARCH_ONLY)
    assert what == "run"
    study.tell(third, 0.5)
    assert tune_workers.claim_trial(study, 2, SEARCH_ONLY) == ("done", None)
    # A worker on another machine created a trial between our count and our ask:
    late = study.ask()
    assert tune_workers.is_surplus(study, late, 2)


def test_an_enqueued_trial_is_claimed_rather_than_waited_for():
    study = optuna.create_study()
    study.enqueue_trial({"n_experts": 4})
    what, trial = tune_workers.claim_trial(study, 1, SEARCH_ONLY)
    assert what == "run" and trial.suggest_categorical("n_experts", [2, 4]) == 4


# --- divergence ------------------------------------------------------------------------------


def test_nonfinite_training_loss_prunes_the_trial_and_the_study_goes_on(in_project, monkeypatch):
    from nanomoe.model import GPT

    forward, first = GPT.forward, []

    def explode_first_model(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training and targets is not None:
            if not first:
                first.append(self)
            if first[0] is self:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", explode_first_model)
    assert tune.main(["--trials", "3", "--jobs", "1"]) == 0
    study = open_study(in_project)
    trials = study.trials
    assert len(finished(study)) == 3 == len(trials)
    assert trials[0].state == TrialState.PRUNED and trials[0].user_attrs["nonfinite"]
    assert "nan" in trials[0].user_attrs["note"]  # why it was pruned
    assert trials[1].state == TrialState.PRUNED and trials[1].user_attrs["steps"] == 10
    assert trials[2].user_attrs["source"] == 1  # the finalist: the only search trial left
    assert trials[2].state == TrialState.COMPLETE and np.isfinite(trials[2].value)
    _, children = mlflow_runs(in_project)
    run0 = [r for r in children if r.data.tags["optuna.trial"] == "0"]
    assert [(r.info.status, r.data.tags["state"]) for r in run0] == [("KILLED", "pruned")]


def test_nan_eval_bpb_prunes_the_trial():
    """The pruner is told each eval's val bpb, the study's metric. Kills: PruneOnEval
    reading ``metrics["val_loss"]`` again (its finite loss here reports 2.0 and never
    prunes)."""
    study = optuna.create_study()
    trial = study.ask()
    callback = PruneOnEval(trial)
    callback.on_eval(0, {"val_loss": 2.0, "val_bpb": 3.0}, None)
    with pytest.raises(optuna.TrialPruned):
        callback.on_eval(5, {"val_loss": 2.0, "val_bpb": float("nan")}, None)
    assert trial.user_attrs["nonfinite"] is True
    assert study.trials[0].intermediate_values == {0: 3.0}


# --- the ladder ------------------------------------------------------------------------------

LADDER = Ladder((5, 10, 20, 40), reduction_factor=2, finalists=2, eval_iters=2)


def add_search_trial(study: optuna.Study, values: dict[int, float], **params) -> None:
    dist = optuna.distributions.IntDistribution(0, 100)
    study.add_trial(
        optuna.trial.create_trial(
            params=params or {"x": len(study.trials)},
            distributions={k: dist for k in (params or {"x": 0})},
            intermediate_values=values,
            state=TrialState.PRUNED,
        )
    )


def test_a_rung_keeps_the_best_share_of_the_trials_that_reached_it():
    study = optuna.create_study()
    for v in (1.0, 2.0, 3.0, 4.0, 5.0):
        add_search_trial(study, {5: v})
    pruner = LADDER.pruner()
    # 6 trials at rung 5 with this one: eta=2 keeps the best 3
    for mine, pruned in ((2.5, False), (3.5, True)):
        trial = study.ask()
        trial.report(mine, 5)
        assert pruner.prune(study, study.trials[-1]) is pruned, mine
        study.tell(trial, state=TrialState.FAIL)
    first = optuna.create_study()  # the first trial at a rung always goes on
    trial = first.ask()
    trial.report(9.0, 5)
    assert pruner.prune(first, first.trials[-1]) is False


def test_search_trials_stop_at_the_last_lower_rung_and_finalists_never_do():
    study = optuna.create_study()
    pruner = LADDER.pruner()
    search = study.ask()
    search.report(1.0, 20)
    assert pruner.prune(study, study.trials[-1]) is True
    study.enqueue_trial({}, user_attrs={"finalist": True, "source": 0})
    finalist = study.ask()
    for step in (5, 10, 20, 40):
        finalist.report(99.0, step)
        assert pruner.prune(study, study.trials[-1]) is False


def test_finalists_are_the_best_distinct_search_trials_at_the_highest_rung_reached():
    study = optuna.create_study()
    add_search_trial(study, {5: 0.1}, x=1)  # best loss, but stopped at a low rung
    add_search_trial(study, {5: 2.0, 10: 1.5, 20: 1.4}, x=2)
    add_search_trial(study, {5: 2.0, 10: 1.6, 20: 1.2}, x=3)
    add_search_trial(study, {5: 2.0, 10: 1.6, 20: 1.2}, x=3)  # the same settings again
    add_search_trial(study, {5: 2.0, 10: 1.0}, x=4)
    chosen = LADDER.choose_finalists(study.trials)
    assert [t.params["x"] for t in chosen] == [3, 2]


def test_tiny_study_sends_exactly_the_finalists_to_the_top_rung(tmp_path):
    root = make_project(tmp_path, {"finalists": 2})
    proc = tune_cmd(root, "--trials", "8")
    assert proc.returncode == 0, proc.stderr
    trials = open_study(root).trials
    assert len(finished(open_study(root))) == 8 == len(trials)
    top = [t for t in trials if t.user_attrs["steps"] > 10]  # trained past the last lower rung
    assert len(top) == 2 and all(t.user_attrs["steps"] == 20 for t in top)
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["finalist"] for t in top)
    assert [t.number for t in top] == [6, 7]  # after the whole search
    search = [t for t in trials if t not in top]
    chosen = sorted(search, key=lambda t: (-max(t.intermediate_values), t.value))[:2]
    assert [t.user_attrs["source"] for t in top] == [t.number for t in chosen]
    for t in top:  # same settings and seed: the rungs repeat the source's losses exactly
        source = trials[t.user_attrs["source"]]
        assert t.params == source.params
        assert {s: t.intermediate_values[s] for s in (5, 10)} == {
            s: source.intermediate_values[s] for s in (5, 10)
        }
    best = json.loads((root / "experiments" / "tune" / "best.json").read_text())
    assert best["best_value"] == min(t.value for t in top)
    reached_10 = sum(10 in t.intermediate_values for t in search)
    assert best["rungs"] == [
        {"steps": 5, "trials": 6},
        {"steps": 10, "trials": reached_10},
        {"steps": 20, "trials": 2},
    ]
    assert 0 < reached_10 < 6  # the first rung pruned some, and kept some


# --- bad input -------------------------------------------------------------------------------


SPACE = TUNE["space"]


@pytest.mark.parametrize(
    ("tune_overrides", "key"),
    [
        pytest.param(
            {"space": {**SPACE, "fgram_max_n": [2, 9]}},
            "tune.space.fgram_max_n",
            id="fgram_max_n-above-mined",
        ),
        pytest.param(
            {"space": {**SPACE, "n_experts": [1, 4]}}, "tune.space.n_experts", id="one-expert"
        ),
        pytest.param(
            {"space": {**SPACE, "n_experts": []}}, "tune.space.n_experts", id="no-choices"
        ),
        pytest.param(
            {"space": {**SPACE, "top_k": [1, 3]}}, "tune.space.top_k", id="top_k-above-n_experts"
        ),
        pytest.param(
            {"space": {**SPACE, "learning_rate": [0.01, 0.001]}},
            "tune.space.learning_rate",
            id="lr-low-above-high",
        ),
        pytest.param(
            {"space": {**SPACE, "dropout": [0.0, 0.1]}}, "tune.space.dropout", id="unknown-key"
        ),
        pytest.param({"rungs": [2, 10]}, "tune.rungs", id="first-rung-inside-warmup"),
        pytest.param({"rungs": [5, 20]}, "tune.rungs", id="last-rung-at-the-top"),
        pytest.param({"rungs": [10, 5]}, "tune.rungs", id="rungs-not-increasing"),
        pytest.param({"finalists": 0}, "tune.finalists", id="no-finalists"),
        pytest.param({"reduction_factor": 1}, "tune.reduction_factor", id="eta-1"),
        pytest.param({"max_iters": 300}, "tune.max_iters", id="replaced-max_iters"),
        pytest.param({"pruner": "median"}, "tune.pruner", id="replaced-pruner"),
    ],
)
def test_invalid_search_space_fails_at_once_naming_the_key(
    in_project, monkeypatch, capsys, tune_overrides, key
):
    assert_refused_in_one_line(in_project, monkeypatch, capsys, tune_overrides, key)
    assert not (in_project / "mlflow.db").exists()


def test_invalid_search_space_exits_2_with_one_line_from_the_command_line(tmp_path):
    root = make_project(tmp_path, {"space": {**TUNE["space"], "fgram_max_n": [2, 9]}})
    proc = tune_cmd(root, "--trials", "2")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "tune.space.fgram_max_n" in proc.stderr and "fgram.mine_max_n=4" in proc.stderr


def test_first_rung_inside_the_warmup_exits_2_with_one_line_naming_the_key(tmp_path):
    root = make_project(tmp_path, {"rungs": [5, 10]}, train={"warmup_iters": 5})
    proc = tune_cmd(root, "--trials", "3")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: params.yaml: tune.rungs: first rung 5 lies inside")
    assert "train.warmup_iters=5" in proc.stderr
    assert not (root / "experiments").exists()


def test_study_run_with_other_settings_is_refused_before_any_trial(in_project, monkeypatch):
    storage = tune_storage.open_storage(None, in_project / "experiments" / "tune" / "journal.log")
    study = optuna.create_study(storage=storage, study_name="nanomoe-tune")
    study.set_user_attr("settings", {"space": {"n_experts": [2, 4, 8]}})
    monkeypatch.setattr(sys, "argv", ["pipeline.tune", "--trials", "2"])
    with pytest.raises(SystemExit) as exit_info:
        cli_run(tune.main)
    assert exit_info.value.code == 2
    assert open_study(in_project).trials == []


def test_help_names_every_option(tmp_path):
    proc = tune_cmd(make_project(tmp_path, data=False), "--help")
    assert proc.returncode == 0
    options = ("--trials", "--study-name", "--storage", "--timeout", "--seed", "--report-only")
    for option in (*options, "--confirm"):
        assert option in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--confirm", "2"), "error: no study named 'nanomoe-tune'", id="no-study"),
        pytest.param(("--confirm", "1"), "error: --confirm 1: needs K >= 2 seeds", id="one-seed"),
        pytest.param(("--trials", "3", "--jobs", "0"), "error: --jobs 0: must be", id="no-jobs"),
        pytest.param(("--trials", "1"), "error: --trials 1: must be above tune.finalists=1",
                     id="no-search-trials"),
    ],
)  # fmt: skip
def test_confirm_and_trials_misuse_exits_2_with_one_line_and_no_study(tmp_path, args, message):
    root = make_project(tmp_path)
    proc = tune_cmd(root, *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1
    journal = root / "experiments" / "tune" / "journal.log"
    if journal.exists():  # opened, but no study created in it
        storage = tune_storage.open_storage(None, journal)
        assert optuna.get_all_study_names(storage) == []
    assert not (root / "experiments" / "tune" / "best.json").exists()
