"""``pipeline.tune --confirm K``: the tuned settings against params.yaml's on K fresh seeds,
each arm trained exactly as an ablation cell, and a confirmation killed midway that resumes
keeping what it finished. (Apart from test_tune.py so that `make test`'s workers, which take
a file each, share the slow tuning tests.)"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from _tune import (
    make_project,
    mlflow_runs,
    open_study,
    start_tune,
    tune_cmd,
    wait_for,
)


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
        losses = [stored[f"{arm}/{s}"]["final_val_loss"] for s in conf["seeds"]]
        assert conf["arms"][arm]["losses"] == losses and len(set(losses)) == 2
        assert all(stored[f"{arm}/{s}"]["steps"] == 20 for s in conf["seeds"])
    diffs = [stored[f"tuned/{s}"]["final_val_loss"] - stored[f"default/{s}"]["final_val_loss"]
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


def test_killed_confirmation_resumes_keeping_the_runs_it_finished(tmp_path):
    root = make_project(tmp_path, train={"max_iters": 150})  # a few seconds a run
    assert tune_cmd(root, "--trials", "3").returncode == 0
    proc = start_tune(root, "--confirm", "2")

    def one_run_done():
        assert proc.poll() is None, (root / "tune.out").read_text()
        runs = confirm_results(root)
        return [k for k, r in runs.items() if "final_val_loss" in r] if len(runs) >= 2 else None

    kept = wait_for(one_run_done)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = confirm_results(root)
    first = open_study(root).user_attrs["settings"]["seed"] + 1
    assert kept == [f"tuned/{first}"] and "final_val_loss" not in before[f"default/{first}"]

    again = tune_cmd(root, "--confirm", "2")
    assert again.returncode == 0, again.stderr
    after = confirm_results(root)
    assert after[f"tuned/{first}"] == before[f"tuned/{first}"]  # kept, not trained again
    assert f"tuned   seed {first}: kept" in again.stdout
    assert all("final_val_loss" in r for r in after.values()) and len(after) == 4
    _, children = mlflow_runs(root)
    status = {r.info.run_id: r.info.status for r in children}
    assert status[before[f"default/{first}"]["mlflow_run_id"]] == "KILLED"  # the dead run, closed
    assert status[after[f"default/{first}"]["mlflow_run_id"]] == "FINISHED"
