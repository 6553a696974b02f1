"""``pipeline.tune --confirm K``: the tuned settings against params.yaml's on K fresh seeds,
each arm trained exactly as an ablation cell, and a confirmation killed midway that resumes
keeping what it finished. (Apart from test_tune.py so that `make test`'s workers, which take
a file each, share the slow tuning tests.)"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import optuna
import pytest
from _tune import (
    make_project,
    mlflow_runs,
    open_study,
    start_tune,
    tune_cmd,
)
from _wait import wait_for

from pipeline.tune.confirm import ATTR, summarize, verdict


def confirm_results(root: Path, name: str = "nanomoe-tune") -> dict:
    return open_study(root, name).user_attrs.get("confirmation", {})


def test_confirm_trains_both_arms_on_fresh_seeds_and_reports_the_paired_difference(tmp_path):
    root = make_project(tmp_path)
    assert tune_cmd(root, "--trials", "3").returncode == 0
    proc = tune_cmd(root, "--confirm", "2")
    assert proc.returncode == 0, proc.stderr
    study = open_study(root)
    study_seed = study.user_attrs["settings"]["seed"]
    best = json.loads((root / "experiments" / "tune" / "best.json").read_text())
    conf = best["confirmation"]
    assert conf["seeds"] == [study_seed + 1, study_seed + 2]
    assert conf["arms"]["tuned"]["params"] == best["best_params"]
    assert conf["arms"]["default"]["params"] == {
        "n_experts": 2, "fgram_max_n": 3, "top_k": 1, "learning_rate": 0.001,
    }  # fmt: skip
    stored = confirm_results(root)
    assert sorted(stored) == sorted(f"{a}/{s}" for a in ("tuned", "default") for s in conf["seeds"])
    for a in conf["arms"].values():  # what each arm costs, beside what it scores
        assert a["params_active"] > 0 and a["flops_per_token"] > 0
    for arm in ("tuned", "default"):
        bpbs = [stored[f"{arm}/{s}"]["final_val_bpb"] for s in conf["seeds"]]
        assert conf["arms"][arm]["losses"] == bpbs and len(set(bpbs)) == 2  # its val bpbs
        assert all(stored[f"{arm}/{s}"]["steps"] == 20 for s in conf["seeds"])
    diffs = [stored[f"tuned/{s}"]["final_val_bpb"] - stored[f"default/{s}"]["final_val_bpb"]
             for s in conf["seeds"]]  # fmt: skip
    d = conf["difference"]
    assert d["per_seed"] == pytest.approx(diffs)
    half = 12.706 * np.std(diffs, ddof=1) / np.sqrt(2)  # t(0.975, 1) = 12.706
    assert (d["mean"], d["ci95"]) == pytest.approx((np.mean(diffs), half), rel=1e-3)
    assert "paired by seed" in proc.stdout and d["verdict"] in proc.stdout

    parents, children = mlflow_runs(root)
    runs = [r for r in children if r.data.tags.get("kind") == "confirmation"]
    assert sorted((r.data.tags["arm"], r.data.tags["seed"]) for r in runs) == sorted(
        (a, str(s)) for a in ("tuned", "default") for s in conf["seeds"]
    )
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)
    for r in runs:  # each run's final val bpb, as the study stored it
        key = f"{r.data.tags['arm']}/{r.data.tags['seed']}"
        assert r.data.metrics["final_val_bpb"] == pytest.approx(stored[key]["final_val_bpb"])


def test_killed_confirmation_resumes_keeping_the_runs_it_finished(tmp_path):
    root = make_project(tmp_path, train={"max_iters": 150})  # a few seconds a run
    assert tune_cmd(root, "--trials", "3").returncode == 0
    proc = start_tune(root, "--confirm", "2")

    def one_run_done():
        assert proc.poll() is None, (root / "tune.out").read_text()
        runs = confirm_results(root)
        return [k for k, r in runs.items() if "final_val_bpb" in r] if len(runs) >= 2 else None

    kept = wait_for(one_run_done)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = confirm_results(root)
    first = open_study(root).user_attrs["settings"]["seed"] + 1
    assert kept == [f"tuned/{first}"] and "final_val_bpb" not in before[f"default/{first}"]

    again = tune_cmd(root, "--confirm", "2")
    assert again.returncode == 0, again.stderr
    after = confirm_results(root)
    assert after[f"tuned/{first}"] == before[f"tuned/{first}"]  # kept, not trained again
    assert f"tuned   seed {first}: kept" in again.stdout
    assert all("final_val_bpb" in r for r in after.values()) and len(after) == 4
    _, children = mlflow_runs(root)
    status = {r.info.run_id: r.info.status for r in children}
    assert status[before[f"default/{first}"]["mlflow_run_id"]] == "KILLED"  # the dead run, closed
    assert status[after[f"default/{first}"]["mlflow_run_id"]] == "FINISHED"


# --- the verdict: lower bpb is better, and only beyond the interval ---------------------------


@pytest.mark.parametrize(
    ("mean", "half", "start"),
    [
        pytest.param(-0.3, 0.1, "the tuned settings beat the defaults", id="tuned-lower"),
        pytest.param(0.3, 0.1, "the defaults beat the tuned settings", id="tuned-higher"),
        pytest.param(-0.05, 0.1, "no difference", id="lower-within-noise"),
        pytest.param(0.05, 0.1, "no difference", id="higher-within-noise"),
        pytest.param(-0.3, float("nan"), "one seed: no interval", id="one-seed"),
    ],
)
def test_the_verdict_favours_the_arm_of_lower_bpb_only_beyond_the_interval(mean, half, start):
    """``mean`` is tuned - default in val bpb: negative means the tuned settings did better.
    Kills: the two `beat` branches of verdict swapped; `mean + half < 0` made `mean < 0`."""
    assert verdict(mean, half).startswith(start)


def study_with(bpbs: dict[str, list[float]]) -> optuna.Study:
    """An in-memory study holding finished confirmation runs of both arms on seeds 1, 2, ..."""
    study = optuna.create_study()
    runs = {
        f"{arm}/{seed}": {
            "arm": arm,
            "seed": seed,
            "params": {"arm": arm},
            "final_val_bpb": v,
            "params_active": 1,
            "flops_per_token": 1.0,
        }  # fmt: skip
        for arm, values in bpbs.items()
        for seed, v in enumerate(values, start=1)
    }
    study.set_user_attr(ATTR, runs)
    return study


@pytest.mark.parametrize(
    ("tuned", "default", "start"),
    [
        pytest.param([1.0, 1.1], [1.5, 1.62], "the tuned settings beat", id="tuned-lower"),
        pytest.param([1.5, 1.62], [1.0, 1.1], "the defaults beat", id="default-lower"),
    ],
)
def test_the_summary_pairs_by_seed_and_credits_the_arm_of_lower_bpb(tuned, default, start):
    """Kills: the paired difference taken as default - tuned in summarize, or the verdict's
    branches swapped: either credits the arm of higher bpb."""
    info = summarize(study_with({"tuned": tuned, "default": default}))
    d = info["difference"]
    assert d["per_seed"] == pytest.approx([t - f for t, f in zip(tuned, default, strict=True)])
    assert d["verdict"].startswith(start)
