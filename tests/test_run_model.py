"""Models in MLflow runs: a finished cell logs its model file, ``pipeline.sample --run-id``
samples from it, and runs record system metrics. The stages run in-process on a tiny project
whose MLflow store is that project's own ``mlflow.db``."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import mlflow
import pytest
import torch
from _project import make_project
from _wait import wait_for

from nanomoe.checkpoint import load_checkpoint
from nanomoe.sample import generate_text
from nanomoe.switches import full
from pipeline.data import download, mine_fgrams, prepare, tokenizer
from pipeline.layout import Layout
from pipeline.ops import sample as run_sample
from pipeline.tracking import Run, system_metrics
from pipeline.train import cli as train
from pipeline.train.cell_run import EXPERIMENT, MODEL_ARTIFACT

LEVELS, SEED = full(), 1337  # every switch of the model on: F-grams too; the char tokenizer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny project with the rope+moe+fgram char cell trained; (root, run id, cell
    folder)."""
    root = make_project(tmp_path_factory.mktemp("runmodel"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "NANOMOE_NPROC", "NANOMOE_DATA_URL"):
            mp.delenv(var, raising=False)
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
        assert download.main([]) == 0
        for stage in (tokenizer, prepare, mine_fgrams):
            assert stage.main([f"--tokenizer={LEVELS['tokenizer']}"]) == 0
        args = [f"--{k}={str(v).lower()}" for k, v in LEVELS.items()]
        assert train.main([*args, f"--seed={SEED}"]) == 0
    files = Layout.load(root).run_files(LEVELS, SEED)
    folder = files["ckpt.pt"].parent
    (run,) = client(root).search_runs(
        [client(root).get_experiment_by_name(EXPERIMENT).experiment_id]
    )
    return root, run.info.run_id, folder


@pytest.fixture
def in_project(trained, monkeypatch):
    root, _, _ = trained
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return trained


def client(root) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def test_a_finished_cell_logs_a_weights_only_model_file_that_rebuilds_its_model(
    in_project, tmp_path
):
    root, run_id, folder = in_project
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=MODEL_ARTIFACT, dst_path=str(tmp_path),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
    )  # fmt: skip
    model = torch.load(path, map_location="cpu", weights_only=True)
    ckpt = load_checkpoint(folder / "ckpt.pt")
    assert set(model) == {"model", "model_config", "fgram_ids", "chars", "tokenizer", "step"}
    assert "optimizer" not in model and "rng_torch" not in model
    assert model["fgram_ids"] and model["fgram_ids"] == ckpt["fgram_ids"]
    assert model["chars"] == ckpt["chars"] and model["model_config"] == ckpt["model_config"]
    assert model["tokenizer"] == ckpt["tokenizer"] and model["tokenizer"]["kind"] == "char"
    assert model["model"].keys() == ckpt["model"].keys()
    assert all(torch.equal(model["model"][k], ckpt["model"][k]) for k in ckpt["model"])
    # the model file samples exactly as the checkpoint does
    same = [generate_text(c, "the", 24, seed=3) for c in (model, ckpt)]
    assert same[0] == same[1]
    assert (folder / "ckpt.pt").stat().st_size > 2 * Path(path).stat().st_size


def test_sample_from_a_run_id_prints_what_the_checkpoint_gives(in_project, capsys):
    root, run_id, folder = in_project
    args = ["--prompt", "the", "--tokens", "30", "--seed", "7"]
    assert run_sample.main(["--run-id", run_id, *args]) == 0
    text = capsys.readouterr().out.rstrip("\n")
    expected = generate_text(load_checkpoint(folder / "ckpt.pt"), "the", 30, seed=7)
    assert text == expected and len(text) == 33


def test_sample_from_an_unknown_run_or_a_run_without_a_model_exits_2_with_one_line(
    in_project, capsys
):
    root, _, _ = in_project
    assert run_sample.main(["--run-id", "0123456789abcdef0123456789abcdef"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --run-id 0123456789abcdef")
    assert "no such run" in err[0]

    bare = Run.start("elsewhere", "no-model", {})
    bare.end("FINISHED")
    assert run_sample.main(["--run-id", bare.id]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"has no {MODEL_ARTIFACT}" in err[0] and "dvc repro" in err[0]


def test_the_cell_run_records_system_metrics(in_project):
    root, run_id, _ = in_project
    run = client(root).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert "system/system_memory_usage_megabytes" in run.data.metrics


def system_keys(root, run_id: str) -> list[str]:
    return [k for k in client(root).get_run(run_id).data.metrics if k.startswith("system/")]


def monitor_threads() -> list[threading.Thread]:
    """MLflow's system-metrics monitors running in this process (each is a thread)."""
    return [t for t in threading.enumerate() if "SystemMetrics" in t.name]


def test_system_metrics_can_be_turned_off_with_mlflows_variable(in_project, monkeypatch):
    """On, the run gets system metrics: the test waits for the first sample (logged at once)
    rather than sleeping past the sampling interval. Off, no monitor even starts, which the
    test sees at once, so neither half depends on timing. Kills: system_metrics() ignoring
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING (its early return removed)."""
    root, _, _ = in_project
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    others = set(monitor_threads())  # any other test's, left running in this process
    seen = {}
    for switch in ("true", "false"):
        monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", switch)
        run = Run.start("switch", switch, {})
        with system_metrics(run):
            monitors = set(monitor_threads()) - others
            if switch == "true":
                wait_for(partial(system_keys, root, run.id), 60, "the first system metrics")
        run.end("FINISHED")
        seen[switch] = (len(monitors), bool(system_keys(root, run.id)))
    assert seen == {"true": (1, True), "false": (0, False)}
