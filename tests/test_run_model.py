"""Models in MLflow runs: a finished cell logs a pyfunc model that generates text, with its
corpus splits as dataset inputs; ``pipeline.sample --run-id`` samples from it; the registry
registers it; runs record system metrics. The stages run in-process on two tiny projects (a
char cell with every switch on; a BPE cell on another corpus) whose MLflow store is each
project's own ``mlflow.db``."""

from __future__ import annotations

import hashlib
import json
import threading
from functools import partial
from pathlib import Path

import mlflow
import mlflow.tracking._tracking_service.utils as tracking_service
import pytest
import torch
from _project import CORPUS, make_project
from _wait import wait_for

from nanomoe.checkpoint import load_checkpoint, model_file
from nanomoe.sample import generate_text
from nanomoe.switches import baseline, full
from pipeline.data import download, mine_fgrams, prepare, tokenizer
from pipeline.layout import Layout
from pipeline.ops import grid
from pipeline.ops import sample as run_sample
from pipeline.tracking import Client, Run, system_metrics
from pipeline.tracking.defaults import fluent_defaults
from pipeline.tracking.model import fetch_model_file, log_model, requirements
from pipeline.tracking.registry import adopt_cells, register_variants
from pipeline.tracking.store import run_model_id
from pipeline.train import cli as train
from pipeline.train.cell_run import EXPERIMENT

SEED = 1337
CELLS = {  # the char cell: every switch of the model on, F-grams too; the bpe cell: dense
    "char": (full(), CORPUS),
    "bpe": ({**baseline(), "tokenizer": "bpe"}, CORPUS.replace("fox", "cat") * 2),
}


def train_cell(root: Path, levels: dict) -> None:
    """The data stages and the cell's train stage, in-process, in project ``root``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "NANOMOE_NPROC", "NANOMOE_DATA_URL"):
            mp.delenv(var, raising=False)
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
        assert grid.main([]) == 0  # dvc.yaml's train stages for this project's grid
        assert download.main([]) == 0
        for stage in (tokenizer, prepare, *([mine_fgrams] if levels["fgram"] else [])):
            assert stage.main([f"--tokenizer={levels['tokenizer']}"]) == 0
        args = [f"--{k}={str(v).lower()}" for k, v in levels.items()]
        assert train.main([*args, f"--seed={SEED}"]) == 0


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Each of CELLS trained in a project of its own: kind -> (root, run id, cell folder)."""
    out = {}
    for kind, (levels, corpus) in CELLS.items():
        overrides = {"tokenizer": {"vocab_size": 300}, "grid": {"tokenizer": [kind]}}
        root = make_project(tmp_path_factory.mktemp(f"runmodel-{kind}"), corpus, overrides)
        train_cell(root, levels)
        folder = Layout.load(root).run_files(levels, SEED)["ckpt.pt"].parent
        (run,) = client(root).search_runs(
            [client(root).get_experiment_by_name(EXPERIMENT).experiment_id]
        )
        out[kind] = (root, run.info.run_id, folder)
    return out


@pytest.fixture
def trained(cells):
    return cells["char"]


@pytest.fixture
def in_project(trained, monkeypatch):
    root, _, _ = trained
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return trained


def client(root) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture
def store(cells, kind, monkeypatch):
    """MLflow's default store, which ``mlflow.pyfunc.load_model`` reads: the ``kind`` cell's
    project's, for this test only."""
    monkeypatch.setattr(tracking_service, "_tracking_uri", None)  # as if never set
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cells[kind][0] / 'mlflow.db'}")


@pytest.mark.parametrize("kind", CELLS)
def test_the_logged_model_generates_what_the_cells_checkpoint_samples(cells, kind, store):
    """``pyfunc.load_model(runs:/<id>/model).predict`` is the checkpoint's text, decoded by
    the cell's tokenizer (char and BPE), for every prompt, with the params it is given; the
    same seed gives the same text, another seed another. Kills: predict ignoring ``seed``
    or ``max_new_tokens``; the model file left out of the model's artifacts."""
    root, run_id, folder = cells[kind]
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    ckpt = load_checkpoint(folder / "ckpt.pt")
    params = {"max_new_tokens": 20, "seed": 7, "temperature": 1.0, "top_k": 0}
    texts = model.predict(["The quick", "Ωμέγα"], params=params)
    assert texts == [generate_text(ckpt, p, 20, 1.0, None, seed=7) for p in ("The quick", "Ωμέγα")]
    assert model.predict(["The quick"], params=params) == texts[:1]
    other = model.predict(["The quick"], params={**params, "seed": 8})
    assert other != texts[:1] and other[0].startswith("The quick")
    default = model.predict(["The"])[0]  # the signature's defaults: nanomoe.sample's
    assert default == generate_text(ckpt, "The", 200, seed=1337)
    assert ckpt["tokenizer"]["kind"] == kind


def test_the_model_file_in_the_logged_model_is_weights_only_and_rebuilds_its_model(
    in_project, tmp_path
):
    root, run_id, folder = in_project
    path = fetch_model_file(run_id, str(tmp_path))
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


def test_the_logged_model_carries_the_cells_final_metrics_and_the_locks_requirements(
    in_project, tmp_path
):
    """The Models tab compares models by their metrics: the logged model's are the cell's
    metrics.json figures. Its requirements are written out from requirements.lock.
    Kills: the model logged before the final metrics (nothing linked); requirements left
    to MLflow's inference."""
    root, run_id, folder = in_project
    c = client(root)
    logged = c.get_logged_model(run_model_id(c, run_id))
    metrics = {m.key: m.value for m in logged.metrics}
    cell = json.loads((folder / "metrics.json").read_text())
    assert metrics["final_val_bpb"] == cell["final_val_bpb"]
    assert metrics["final_val_loss"] == cell["final_val_loss"]
    assert logged.source_run_id == run_id and logged.model_type == "nanomoe"
    assert logged.experiment_id == c.get_run(run_id).info.experiment_id
    with fluent_defaults():
        path = mlflow.artifacts.download_artifacts(
            f"runs:/{run_id}/model/requirements.txt", dst_path=str(tmp_path)
        )
    assert Path(path).read_text().split() == requirements(Path(__file__).resolve().parents[1])


def test_requirements_take_the_locks_versions_where_there_is_a_lock(tmp_path):
    """Kills: the lock's versions ignored (the installed ones taken), or the model library's
    dependencies not all listed."""
    (tmp_path / "requirements.lock").write_text(
        "mlflow==9.9.9 \\\n    --hash=sha256:00\ntorch==1.2.3 \\\nnumpy==0.1\n"
    )
    reqs = dict(r.split("==") for r in requirements(tmp_path))
    assert reqs["mlflow"] == "9.9.9" and reqs["torch"] == "1.2.3" and reqs["numpy"] == "0.1"
    assert {"tqdm", "tiktoken", "rustbpe"} <= set(reqs)
    bare = dict(r.split("==") for r in requirements(tmp_path / "none"))
    assert bare["mlflow"] == mlflow.__version__ and "+" not in bare["torch"]


@pytest.mark.parametrize("kind", CELLS)
def test_the_cell_run_has_its_corpus_splits_as_dataset_inputs(cells, kind):
    """Train and validation, in their contexts, named for the tokenizer, digest the corpus's
    sha256: two corpora, two digests. Kills: one split logged; the digest of a constant."""
    root, run_id, _ = cells[kind]
    corpus = CELLS[kind][1].encode("utf-8")
    inputs = client(root).get_run(run_id).inputs.dataset_inputs
    contexts = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs
    }
    assert set(contexts) == {"training", "validation"}
    meta = json.loads((root / f"data/{kind}/prepared/meta.json").read_text())
    for context, split in (("training", "train"), ("validation", "val")):
        d = contexts[context]
        assert d.digest == hashlib.sha256(corpus).hexdigest()[:32]
        assert d.name.endswith(kind) and ("train" if split == "train" else "validation") in d.name
        assert json.loads(d.source) == {"url": (root / "corpus.txt").as_uri()}
        assert json.loads(d.profile)["tokens"] == meta[f"n_{split}"]
    digests = {c.get_run(r).inputs.dataset_inputs[0].dataset.digest for c, r in runs_of(cells)}
    assert len(digests) == 2


def runs_of(cells) -> list[tuple]:
    return [(client(root), run_id) for root, run_id, _ in cells.values()]


def test_the_cell_run_is_named_for_its_variant_and_seed(in_project):
    root, run_id, _ = in_project
    assert client(root).get_run(run_id).info.run_name == f"rope+moe+fgram s{SEED}"


def test_the_registry_aliases_the_single_best_and_numbers_a_tie_and_rerunning_adds_nothing(
    in_project,
):
    """Two variants' runs (the second logs the cell's model file again), then the registry:
    ``best`` alone on a single best; ``tied-best-1..2`` and no ``best`` on a tie; a rerun
    makes no new version; the logged model lists its version once. Kills: a version per
    report run; ``best`` kept through a tie; the version not listed on the logged model."""
    root, run_id, folder = in_project
    c = Client()
    other = Run.start(EXPERIMENT, "B s1337", {})
    log_model(other, model_file(load_checkpoint(folder / "ckpt.pt")), 12, "the", root)
    runs = {"A": run_id, "B": other.id}
    versions = register_variants(c, "reg-test", {"A": run_id}, "A", [])
    assert versions == {"A": "1"}
    assert aliases(c, "reg-test") == {"best": "1"}
    again = register_variants(c, "reg-test", {"A": run_id}, "A", [])
    assert again == versions and len(c.search_model_versions("name = 'reg-test'")) == 1
    model = c.get_logged_model(run_model_id(c, run_id))  # the Models tab's "Registered models"
    assert json.loads(model.tags["mlflow.modelVersions"]) == [{"name": "reg-test", "version": 1}]
    tied = register_variants(c, "reg-test", runs, None, ["B", "A"])
    assert tied == {"A": "1", "B": "2"}
    assert aliases(c, "reg-test") == {"tied-best-1": "2", "tied-best-2": "1"}
    bare = Run.start("elsewhere", "no-model", {})
    assert register_variants(c, "reg-test", {"C": bare.id}, "C", []) == {}
    assert "best" not in aliases(c, "reg-test")


def aliases(c, name: str) -> dict[str, str]:
    """A registered model's aliases, versions as text (SQLite's store gives numbers)."""
    return {k: str(v) for k, v in c.get_registered_model(name).aliases.items()}


def test_a_summary_run_adopts_orphan_cell_runs_and_tags_runs_another_ablation_parented(
    in_project,
):
    """Kills: an earlier parent overwritten; the ablations tag not kept for a later one."""
    root, run_id, _ = in_project
    c = Client()
    orphan = Run.start("adopt", "cell s1", {})
    first, second = Run.start("adopt", "ablation 1", {}), Run.start("adopt", "ablation 2", {})
    assert adopt_cells(c, first.id, [orphan.id]) == 1
    assert adopt_cells(c, second.id, [orphan.id]) == 0
    tags = c.get_run(orphan.id).data.tags
    assert tags["mlflow.parentRunId"] == first.id
    assert tags["ablations"] == f"{first.id},{second.id}"
    assert adopt_cells(c, second.id, [orphan.id]) == 0
    assert c.get_run(orphan.id).data.tags["ablations"] == f"{first.id},{second.id}"


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
    assert len(err) == 1 and "has no model" in err[0] and "dvc repro" in err[0]


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
