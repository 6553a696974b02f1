"""A team's MLflow tracking server: ``mlflow server`` on a real PostgreSQL backend store, with
artifacts proxied over HTTP to its own folder, on 127.0.0.1 only.

A tiny project's grid (two cells, trained by ``pipeline.workers -j 2``: the train stages in
two worktrees, then the report stage with its summary run) and a two-worker tuning study log
to it through ``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>`` alone, and everything is read
back over HTTP: runs, params, metrics and their histories, artifacts (downloaded and compared
byte for byte with the files the stage wrote), the summary run's tags, and the study's
parent/trial nesting. Nothing may land in the project's own store (mlflow.db, mlartifacts/).

The server takes about 20 s to start on a 2-core machine (imports and the database
migrations); the project's data stages run meanwhile.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.tracking._tracking_service.utils as tracking_service
import optuna
import pytest
import yaml
from _browser import render
from _project import env_for, run_module
from _runcache import committed_project
from _tune import TUNE
from optuna.trial import TrialState

from nanomoe.checkpoint import load_checkpoint
from nanomoe.sample import generate_text
from pipeline.tune import storage as tune_storage

START_TIMEOUT_S = 180  # about 20 s idle; generous for a loaded 2-core machine
CELLS = [("false", "false", "false"), ("false", "false", "true")]  # dense, fgram; char
TRIALS = 3
ARTIFACTS = ("metrics.json", "sample.txt", "curve.png", "curve.csv")
OVERRIDES = {
    # the grid of CELLS; the tuner trains grid.tokenizer's last level: char
    "grid": {"rope": [False], "moe": [False], "fgram": [False, True], "tokenizer": ["char"]},
    "train": {"max_iters": 12, "eval_interval": 6, "warmup_iters": 2, "device": "cpu"},
    "tune": {**TUNE, "rungs": [6]},  # and the top, train.max_iters = 12
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """``mlflow server`` in its own process group and folder; ``ready()`` waits for it."""

    def __init__(self, backend_store: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mlflow", dir="/tmp"))
        self.artifacts = self.dir / "artifacts"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (self.dir / "server.log").open("w")
        cmd = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri", backend_store,
            "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # Not its GenAI job runner: seven more Python processes that tracking does not use.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=self.dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: uvicorn's worker goes with it
        )  # fmt: skip
        self.startup_s: float | None = None

    def log(self) -> str:
        self._log.flush()
        return (self.dir / "server.log").read_text(errors="replace")[-6000:]

    def ready(self) -> str:
        """The server's URL, once ``GET /health`` answers OK; fails with its log if it does
        not within START_TIMEOUT_S or exits."""
        while self.startup_s is None:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() - self.started > START_TIMEOUT_S:
                pytest.fail(f"mlflow server: no /health after {START_TIMEOUT_S}s:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        self.startup_s = time.monotonic() - self.started
                        break
            except OSError:  # refused while it starts; URLError is an OSError
                pass
            time.sleep(0.25)
        return self.url

    def stop(self) -> None:
        try:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        finally:
            self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres) -> Iterator[TrackingServer]:
    """Started, not yet waited for: the project's data stages run while it boots."""
    server = TrackingServer(postgres.create_database("mlflow"))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Logged:
    root: Path
    url: str
    client: mlflow.MlflowClient
    server: TrackingServer


def run_logged(cmds: list[list[str]], root: Path, env: dict) -> None:
    """Run the commands side by side; each must exit 0."""
    procs = []
    for i, cmd in enumerate(cmds):
        with open(root / f"cmd{i}.log", "w") as out:
            procs.append(subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=out))
    for i, (cmd, proc) in enumerate(zip(cmds, procs, strict=True)):
        assert proc.wait(timeout=300) == 0, f"{cmd}:\n{(root / f'cmd{i}.log').read_text()}"


@pytest.fixture(scope="module")
def logged(server, tmp_path_factory) -> Logged:
    """A tiny project whose grid (two workers, then the report) and a two-worker study log
    to the server."""
    root = committed_project(tmp_path_factory.mktemp("team"), OVERRIDES)
    env = {**env_for(root), "OMP_NUM_THREADS": "1", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
    proc = run_module(root, "dvc", "repro", "mine_fgrams", env=env)  # the data, once
    assert proc.returncode == 0, proc.stderr
    env["MLFLOW_TRACKING_URI"] = url = server.ready()
    py = [sys.executable, "-m"]
    workers = [*py, "pipeline.workers", "-j", "2", "--threads", "1"]
    run_logged([workers, [*py, "pipeline.tune", "--trials", str(TRIALS), "--jobs", "2"]], root, env)
    return Logged(root, url, mlflow.MlflowClient(tracking_uri=url), server)


def runs_of(logged: Logged, experiment: str) -> list:
    exp = logged.client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} on {logged.url}"
    return logged.client.search_runs([exp.experiment_id], max_results=1000)


def cell_folders(root: Path) -> dict[str, Path]:
    """{run id: the cell's output folder}, from the run.json each train stage writes."""
    runs = (root / "experiments" / "ablation").glob("*/run.json")
    return {json.loads(p.read_text())["run_id"]: p.parent for p in runs}


def cell_runs(logged: Logged) -> list:
    return [r for r in runs_of(logged, "nanomoe-ablation") if r.data.tags["kind"] == "cell"]


def test_train_runs_land_finished_with_params_and_metrics(logged):
    runs = cell_runs(logged)
    folders = cell_folders(logged.root)
    assert len(runs) == len(CELLS) and {r.info.run_id for r in runs} == set(folders)
    for run in runs:
        assert run.info.status == "FINISHED", run.info
        params, metrics = run.data.params, run.data.metrics
        assert params["model.n_layer"] == "1" and params["model.n_embd"] == "16"
        assert params["train.max_iters"] == "12" and params["seed"] == "1337"
        local = json.loads((folders[run.info.run_id] / "metrics.json").read_text())
        assert run.info.run_name == f"{local['variant']} s1337"
        assert local["variant"] == run.data.tags["variant"]
        assert params["rope"] == str(local["rope"]) and params["fgram"] == str(local["fgram"])
        assert params["tokenizer"] == local["tokenizer"] == "char"
        for key in ("final_val_loss", "best_val_loss", "final_val_bpb", "best_val_bpb"):
            assert metrics[key] == pytest.approx(local[key]), key
        rows = (folders[run.info.run_id] / "curve.csv").read_text().splitlines()[1:]
        for key in ("val_loss", "val_bpb"):  # every eval, in both units
            history = logged.client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == [int(row.split(",")[0]) for row in rows]


def test_train_artifacts_go_through_the_server_and_download_byte_for_byte(logged, tmp_path):
    folders = cell_folders(logged.root)
    for run in cell_runs(logged):
        run_id = run.info.run_id
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        listed = {a.path for a in logged.client.list_artifacts(run_id)}
        assert set(ARTIFACTS) <= listed
        for name in ARTIFACTS:
            got = logged.client.download_artifacts(run_id, name, str(tmp_path / run_id))
            assert Path(got).read_bytes() == (folders[run_id] / name).read_bytes(), name
        # on the server's side, in its --artifacts-destination
        stored = list(logged.server.artifacts.rglob(f"{run_id}/artifacts/metrics.json"))
        assert len(stored) == 1


def test_the_report_logs_its_summary_run_to_the_server_with_string_tags(logged):
    """The report stage against a tracking server: its summary run (kind=ablation) lands
    FINISHED, names both cell runs, and its tags are the strings the report meant. Kills:
    Run.start passing tags unconverted (the REST store's RunTag.to_proto refuses the int
    n_seeds and the bool mixed_runtime: the stage dies after writing report.md)."""
    (summary,) = [
        r for r in runs_of(logged, "nanomoe-ablation") if r.data.tags["kind"] == "ablation"
    ]
    assert summary.info.status == "FINISHED"
    tags = summary.data.tags
    assert tags["n_seeds"] == "1" and tags["mixed_runtime"] == "False"
    assert set(tags["cell_run_ids"].split(",")) == {r.info.run_id for r in cell_runs(logged)}
    local = json.loads((logged.root / "experiments" / "summary.json").read_text())
    assert summary.data.metrics["dense_final_val_bpb"] == pytest.approx(
        local["dense_final_val_bpb"]
    )


def test_the_report_parents_the_cells_and_registers_their_models_on_the_server(logged):
    """Over REST: the summary run is the cells' parent; each variant is one version of the
    registered model, the best (or the tie) aliased as summary.json says. Kills: the
    parent tag or the registry written only to a local store."""
    (summary,) = [
        r for r in runs_of(logged, "nanomoe-ablation") if r.data.tags["kind"] == "ablation"
    ]
    exp = logged.client.get_experiment_by_name("nanomoe-ablation").experiment_id
    children = logged.client.search_runs(
        [exp], filter_string=f"tags.mlflow.parentRunId = '{summary.info.run_id}'"
    )
    assert {r.info.run_id for r in children} == {r.info.run_id for r in cell_runs(logged)}
    versions = logged.client.search_model_versions("name = 'nanomoe-ablation'")
    assert {v.run_id for v in versions} == {r.info.run_id for r in cell_runs(logged)}
    local = json.loads((logged.root / "experiments" / "summary.json").read_text())
    model = logged.client.get_registered_model("nanomoe-ablation")
    aliases = {k: str(v) for k, v in model.aliases.items()}
    by_variant = {v.tags["variant"]: str(v.version) for v in versions}
    if local["best_variant"]:
        assert aliases == {"best": by_variant[local["best_variant"]]}
    else:
        assert "best" not in aliases


def test_the_cells_models_load_over_http_and_predict_and_their_corpus_is_an_input(
    logged, monkeypatch
):
    """``mlflow.pyfunc.load_model`` against the server (nothing local): the F-gram cell's
    model generates what its local ckpt.pt samples; its run's dataset inputs carry the
    corpus's digest."""
    monkeypatch.setattr(tracking_service, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged.url)
    folders = cell_folders(logged.root)
    (run_id,) = [i for i, f in folders.items() if "fgram-true" in f.name]
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    ckpt = load_checkpoint(folders[run_id] / "ckpt.pt")
    params = {"max_new_tokens": 12, "seed": 5}
    assert model.predict(["the"], params=params) == [generate_text(ckpt, "the", 12, seed=5)]
    sha = yaml.safe_load((logged.root / "params.yaml").read_text())["data"]["sha256"]
    inputs = logged.client.get_run(run_id).inputs.dataset_inputs
    assert sorted(i.dataset.digest for i in inputs) == [sha[:32]] * 2


def test_the_models_tab_in_a_browser_lists_each_cells_model_with_its_final_val_bpb(logged):
    """The experiment's Models tab (Model training view), rendered by headless Chromium from
    the server: a row per cell's model, named by its source run, and the final_val_bpb
    column holding each cell's figure (as the UI rounds it). Kills: the model logged
    before the final metrics (the column stays empty); a cell that logs no model."""
    exp = logged.client.get_experiment_by_name("nanomoe-ablation").experiment_id
    dom = render(f"{logged.url}/#/experiments/{exp}/models?workflowType=machine_learning")
    assert "final_val_bpb" in dom
    shown = [float(x) for x in re.findall(r">(\d+\.\d+)<", dom)]
    for run in cell_runs(logged):
        assert f">{run.info.run_name}<" in dom
        bpb = run.data.metrics["final_val_bpb"]
        assert any(abs(x - bpb) < 1e-3 for x in shown), (run.info.run_name, bpb, shown)


def test_study_has_one_parent_and_a_nested_run_per_finished_trial(logged):
    runs = runs_of(logged, "nanomoe-tune")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert json.loads(parent.data.params["space.n_experts"]) == [2, 4]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}

    journal = logged.root / "experiments" / "tune" / "journal.log"
    study = optuna.load_study(
        study_name="nanomoe-tune", storage=tune_storage.open_storage(None, journal)
    )
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == TRIALS == len(trials)
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trials) == [t.number for t in done]
    status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}  # pruned: KILLED
    for run in trials:
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        assert run.info.status == status[trial.state], (run.info, trial.state)
        # the pruner's figure: each eval's val bpb, as the trial's run logs it
        history = logged.client.get_metric_history(run.info.run_id, "val_bpb")
        assert {m.step: m.value for m in history} == pytest.approx(trial.intermediate_values)
        assert run.data.params["n_experts"] == str(trial.params["n_experts"])


def test_no_run_is_left_running_and_nothing_lands_in_the_local_store(logged):
    for name in ("nanomoe-ablation", "nanomoe-tune"):
        assert {r.info.status for r in runs_of(logged, name)} <= {"FINISHED", "KILLED"}
    assert not (logged.root / "mlflow.db").exists()
    assert not (logged.root / "mlartifacts").exists()
    assert not (logged.root / "mlruns").exists()


def test_server_lists_the_experiments_over_its_rest_api(logged):
    query = f"{logged.url}/ajax-api/2.0/mlflow/experiments/search?max_results=100"
    with urllib.request.urlopen(query, timeout=30) as answer:
        names = {e["name"] for e in json.load(answer)["experiments"]}
    assert {"nanomoe-ablation", "nanomoe-tune"} <= names


def test_a_teammate_samples_from_a_run_id_over_http(logged):
    """``pipeline.sample --run-id`` on another machine: only MLFLOW_TRACKING_URI is shared.
    The F-gram cell's model file comes over HTTP and samples exactly as the local ckpt.pt."""
    folders = cell_folders(logged.root)
    (run_id,) = [i for i, f in folders.items() if "fgram-true" in f.name]
    elsewhere = {**env_for(logged.root), "MLFLOW_TRACKING_URI": logged.url}
    args = ["--run-id", run_id, "--prompt", "the", "--tokens", "20", "--seed", "5"]
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.sample", *args],
        cwd=logged.root.parent,  # not the project: nothing local to fall back on
        env=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    ckpt = load_checkpoint(folders[run_id] / "ckpt.pt")
    assert ckpt["fgram_ids"]  # an F-gram variant: its table travels with the model
    assert proc.stdout.rstrip("\n") == generate_text(ckpt, "the", 20, seed=5)
    run = logged.client.get_run(run_id)
    assert "system/cpu_utilization_percentage" in run.data.metrics  # system metrics too
