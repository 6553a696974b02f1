"""The real `dvc repro`, end to end, in a throwaway copy of the project."""

from __future__ import annotations

import subprocess

import mlflow
import pandas as pd
import pytest
import yaml
from _project import make_project, run_module


def dvc(root, *args):
    return run_module(root, "dvc", *args)


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("project"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert dvc(root, "init", "-q").returncode == 0
    assert dvc(root, "config", "core.analytics", "false").returncode == 0
    first = dvc(root, "repro")
    return root, first


def test_dvc_repro_runs_every_stage(repro):
    root, first = repro
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("download", "prepare", "mine_fgrams", "report"):
        assert f"Running stage '{stage}'" in first.stdout
    assert first.stdout.count("Running stage 'train") == 8


def test_report_has_one_row_per_variant_and_the_effects(repro):
    root, _ = repro
    df = pd.read_csv(root / "experiments" / "ablation.csv")
    assert len(df) == 8
    assert set(map(tuple, df[["rope", "moe", "fgram"]].values.tolist())) == {
        (r, m, f) for r in (False, True) for m in (False, True) for f in (False, True)
    }
    assert list(df.columns[:5]) == ["variant", "rope", "moe", "fgram", "seed"]
    assert (df.val_loss > 0).all() and (df.params_active <= df.params_total).all()
    report = (root / "experiments" / "report.md").read_text(encoding="utf-8")
    best = df.sort_values("val_loss").variant.iloc[0]
    assert f"**Best variant: `{best}`**" in report
    for effect in ("rope (main)", "moe (main)", "fgram (main)", "rope x moe", "moe x fgram"):
        assert effect in report
    assert (root / "experiments" / "ablation.png").stat().st_size > 1000


def test_mlflow_store_holds_eight_finished_runs_with_val_loss(repro):
    root, _ = repro
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["nanomoe-ablation"])
    assert len(runs) == 8
    assert (runs.status == "FINISHED").all()
    assert runs["metrics.val_loss"].notna().all()
    assert runs["metrics.final_val_loss"].notna().all()
    assert set(runs["tags.mlflow.runName"]) == set(
        pd.read_csv(root / "experiments/ablation.csv").variant
    )
    assert set(runs["params.rope"]) == {"True", "False"}
    client = mlflow.MlflowClient()
    history = client.get_metric_history(runs.run_id[0], "val_loss")
    assert [m.step for m in history] == [0, 6, 12]
    artifacts = {a.path for a in client.list_artifacts(runs.run_id[0])}
    assert {"metrics.json", "sample.txt", "curve.png"} <= artifacts


def test_second_repro_trains_nothing(repro):
    root, _ = repro
    again = dvc(root, "repro")
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout


def test_changing_fgram_params_touches_only_fgram_cells(repro):
    root, _ = repro
    params_path = root / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["fgram"]["max_n"] = 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    try:
        status = dvc(root, "status")
    finally:
        params_path.write_text(original)
    changed = {
        line.strip().rstrip(":") for line in status.stdout.splitlines() if line.endswith(":")
    }
    changed = {c for c in changed if c.startswith(("train", "report", "mine"))}
    assert changed == {
        "train_fgram@true-false-true-1337",
        "train_fgram@false-false-true-1337",
        "train_moe_fgram@true-true-true-1337",
        "train_moe_fgram@false-true-true-1337",
    }, status.stdout


def test_sample_cli_continues_a_pipeline_checkpoint(repro):
    root, _ = repro
    ckpt = next((root / "experiments" / "ablation").glob("*moe-true_fgram-true*/ckpt.pt"))
    out = run_module(
        root, "nanomoe.sample", "--checkpoint", str(ckpt), "--prompt", "café", "--tokens", "10"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("café")
