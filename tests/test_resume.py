"""A train cell killed at any point resumes under `dvc repro`, bit for bit, in the same run.

The kills are real SIGKILLs of the stage process, placed at an exact step by the trainer's
fault-injection hook (NANOMOE_FAULT): tiny cells train too fast for a timed kill to land.
"""

from __future__ import annotations

import json
import re
import subprocess
from unittest.mock import ANY

import mlflow
import pytest
import yaml
from _project import env_for, make_project, run_module

from nanomoe.config import GPTConfig, TrainConfig
from pipeline.resume import ResumePoint, fingerprint

CELL = "train@false-false-false-1337"  # dense, abspos; tiny params: 12 steps, eval every 6
RUN_DIR = "experiments/ablation/rope-false_moe-false_fgram-false_seed-1337"
TIMING = ("tokens_per_sec", "wall_s")


def dvc(root, *args, fault: str | None = None) -> subprocess.CompletedProcess:
    env = env_for(root)
    if fault:
        env["NANOMOE_FAULT"] = fault
    return run_module(root, "dvc", *args, env=env)


def outputs(root) -> tuple[dict, str]:
    """metrics.json without its timing fields, and curve.csv."""
    metrics = json.loads((root / RUN_DIR / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING}, (
        root / RUN_DIR / "curve.csv"
    ).read_text()


def runs(root) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-ablation")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def val_loss_steps(root, run_id: str) -> list[int]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return sorted(m.step for m in client.get_metric_history(run_id, "val_loss"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose dense cell trained once, uninterrupted: the reference outputs."""
    root = make_project(tmp_path_factory.mktemp("resume"))
    assert run_module(root, "dvc", "init", "--no-scm", "-q").returncode == 0
    done = dvc(root, "repro", CELL)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, outputs(root)


def kill_then_repro(root, fault: str) -> subprocess.CompletedProcess:
    killed = dvc(root, "repro", "--force", "--single-item", CELL, fault=fault)
    assert killed.returncode != 0 and not (root / RUN_DIR / "metrics.json").exists()
    assert list((root / ".checkpoints").glob("*.pt")), "no checkpoint survived the kill"
    return killed


@pytest.mark.parametrize("fault", ["kill@9", "kill-after-checkpoint@6"])
def test_a_killed_cell_resumes_from_its_checkpoint_with_identical_results(project, fault):
    root, reference = project
    kill_then_repro(root, fault)
    again = dvc(root, "repro", CELL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"resuming from step 6\b", again.stdout), again.stdout
    assert outputs(root) == reference
    assert not list((root / ".checkpoints").iterdir())  # a completed cell leaves none
    last = runs(root)[-1]
    assert all(r.info.status != "RUNNING" for r in runs(root))
    assert last.info.status == "FINISHED"
    assert val_loss_steps(root, last.info.run_id) == [0, 6, 12]  # none lost, none twice


def test_a_checkpoint_of_other_settings_is_discarded_and_its_run_killed(project):
    root, reference = project
    kill_then_repro(root, "kill@9")
    killed_run = runs(root)[-1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.002
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    again = dvc(root, "repro", CELL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "discarded, its train differ" in again.stdout and "resuming" not in again.stdout
    after = {r.info.run_id: r for r in runs(root)}
    assert after[killed_run.info.run_id].info.status == "KILLED"
    fresh = runs(root)[-1]
    assert fresh.info.status == "FINISHED" and fresh.info.run_id != killed_run.info.run_id
    assert val_loss_steps(root, fresh.info.run_id) == [0, 6, 12]
    assert outputs(root)[0]["steps"] == 12 and outputs(root) != reference


def test_resume_check_names_what_differs_and_refuses_an_unreadable_file(tmp_path):
    point = ResumePoint(tmp_path / "c.pt", tmp_path / "c.json")
    data = tmp_path / "train.bin"
    data.write_bytes(b"\0" * 8)
    fp = fingerprint(GPTConfig(), TrainConfig(), [data])
    assert point.check(fp) == (None, None)  # nothing to resume
    point.checkpoint.write_bytes(b"not a checkpoint")
    resumed, why = point.check(fp)
    assert resumed is None and why.startswith("unreadable")
    # what only changes how the cell runs is left out; the data's bytes are not
    assert fingerprint(GPTConfig(), TrainConfig(progress=False, device="cpu"), [data]) == fp
    data.write_bytes(b"\1" * 8)
    assert fingerprint(GPTConfig(), TrainConfig(), [data])["inputs"] != fp["inputs"]


def test_a_store_lost_mid_run_keeps_the_files_and_the_rerun_completes_without_training(
    tmp_path, monkeypatch
):
    from nanomoe.trainer import Trainer
    from pipeline import download, prepare, tracking, train
    from pipeline.stage import StageError

    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "NANOMOE_FAULT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NANOMOE_DATA_URL", str(root / "corpus.txt"))
    assert download.main([]) == 0 and prepare.main([]) == 0
    args = ["--rope", "false", "--moe", "true", "--fgram", "false", "--seed", "1337"]
    real_log = tracking.Run.log_metrics
    logged = []

    def store_gone_after_first_eval(self, metrics, step):
        if logged:
            raise mlflow.exceptions.MlflowException("unable to open database file")
        logged.append(step)
        return real_log(self, metrics, step)

    monkeypatch.setattr(tracking.Run, "log_metrics", store_gone_after_first_eval)
    with pytest.raises(StageError, match=r"mlflow\.db: the MLflow store failed .* without"):
        train.main(args)
    run_dir = root / "experiments/ablation/rope-false_moe-true_fgram-false_seed-1337"
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["steps"] == 12  # training went on to the end and wrote its files
    assert [r.info.status for r in runs(root)] == ["FAILED"]

    monkeypatch.setattr(tracking.Run, "log_metrics", real_log)
    monkeypatch.setattr(Trainer, "train_step", lambda *a: pytest.fail("the cell retrained"))
    assert train.main(args) == 0
    (run,) = runs(root)
    assert run.info.status == "FINISHED" and run.data.metrics["final_val_loss"] > 0
    assert val_loss_steps(root, run.info.run_id) == [0, 6, 12]
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again == written | {"wall_s": ANY, "tokens_per_sec": ANY}  # MoE stats included
