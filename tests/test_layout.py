"""Paths come from dvc.yaml, project files from the working directory, and the report finds
the cells from the files the train stages wrote."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from _project import make_project

from nanomoe.config import GPTConfig, InputError, MiningConfig, TrainConfig
from nanomoe.switches import BY_NAME, cells, config_fields, full, full_grid, variant_name
from pipeline import download, prepare, report, tracking
from pipeline.layout import Layout, project_root
from pipeline.params import KEYS, load_params
from pipeline.stage import ParamsError, StageError

REPO = Path(__file__).resolve().parents[1]
CELLS = cells(full_grid())


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    for key in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "NANOMOE_DATA_URL"):
        monkeypatch.delenv(key, raising=False)
    return root


# --- dvc.yaml is the one place for paths ----------------------------------------------------


def test_a_path_changed_in_dvc_yaml_moves_what_the_stages_write_and_read(project):
    text = (project / "dvc.yaml").read_text(encoding="utf-8")
    (project / "dvc.yaml").write_text(text.replace("data/raw", "data/shards"))
    assert download.main([]) == 0 and prepare.main([]) == 0
    assert (project / "data/shards/corpus.txt").exists()
    assert not (project / "data/raw").exists()
    assert (project / "data/prepared/meta.json").exists()


def test_a_cells_files_are_the_outs_of_its_train_stage():
    layout = Layout.load(REPO)
    levels = {"rope": True, "moe": False, "fgram": True}
    files = layout.run_files(levels, seed=7)
    cell = REPO / "experiments/ablation/rope-true_moe-false_fgram-true_seed-7"
    names = ("ckpt.pt", "sample.txt", "curve.png", "run.json", "metrics.json", "curve.csv")
    assert files == {n: cell / n for n in names}
    assert layout.train_stage(levels) == "train_fgram"


@pytest.mark.parametrize("levels", CELLS, ids=[variant_name(c) for c in CELLS])
def test_every_stage_declares_the_upstream_files_it_reads(levels):
    """Kills: a switch's data (the registry's ``data``) left out of its cells' deps, or
    given to cells that do not use it."""
    layout = Layout.load(REPO)
    assert layout.raw in layout.data_deps("prepare")
    assert layout.prepared in layout.data_deps("mine_fgrams")
    train = layout.data_deps(layout.train_stage(levels))
    needed = {REPO / p for name, level in levels.items() if level for p in BY_NAME[name].data}
    assert set(train) == {layout.prepared, *needed}
    assert (layout.fgrams in train) == levels["fgram"]
    cell = layout.run_files(levels, seed=1)["metrics.json"].parent
    assert cell.parent == layout.ablation  # the report reads where every cell writes


def test_a_missing_input_names_the_stage_that_writes_it(project):
    with pytest.raises(StageError, match=r"^data/prepared: not found; run the prepare stage"):
        Layout.load().require(Layout.load().prepared)


def test_project_files_follow_the_working_directory_and_only_the_store_follows_dvc_root(
    project, tmp_path_factory, monkeypatch
):
    parent = tmp_path_factory.mktemp("parent")
    monkeypatch.setenv("DVC_ROOT", str(parent))
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    assert project_root() == project.resolve()
    assert tracking.tracking_uri() == f"sqlite:///{parent.resolve() / 'mlflow.db'}"


# --- params.yaml through one reader ---------------------------------------------------------


def test_every_config_field_has_exactly_one_params_key():
    set_by_stage = {"vocab_size", *config_fields(full())}
    assert set(KEYS[GPTConfig]) == {f.name for f in fields(GPTConfig)} - set_by_stage
    assert set(KEYS[TrainConfig]) == {f.name for f in fields(TrainConfig)} - {"seed"}
    assert set(KEYS[MiningConfig]) == {f.name for f in fields(MiningConfig)}
    keys = [key for table in KEYS.values() for key in table.values()]
    assert len(keys) == len(set(keys))


def test_shipped_params_are_the_reference_config_the_dataclasses_default_to():
    p = load_params(REPO / "params.yaml")
    assert p.model == GPTConfig(vocab_size=2, **config_fields(full()))
    assert p.train == TrainConfig() and p.mining == MiningConfig()


def test_a_key_left_out_takes_the_default_and_an_unknown_section_is_refused(project):
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    del params["train"]["beta2"]
    params["trian"] = {"max_iters": 3}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"^params.yaml: trian: unknown section"):
        load_params()
    del params["trian"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_params().train.beta2 == TrainConfig().beta2


# --- the report finds the cells on disk -----------------------------------------------------


def write_cell(layout: Layout, levels: dict, seed: int) -> None:
    files = layout.run_files(levels, seed)
    loss = 2.0 - 0.1 * levels["rope"] - 0.05 * levels["moe"] - 0.02 * levels["fgram"]
    loss += 0.001 * seed
    metrics = {
        "variant": variant_name(levels), **levels,
        "seed": seed, "final_val_loss": loss, "best_val_loss": loss - 0.01, "best_step": 10,
        "train_loss": loss - 0.1, "tokens_per_sec": 1000.0, "wall_s": 1.0, "steps": 10,
        "tokens": 640, "flops_per_token": 1e6, "params_total": 100, "params_active": 90,
    }  # fmt: skip
    files["metrics.json"].parent.mkdir(parents=True, exist_ok=True)
    files["metrics.json"].write_text(json.dumps(metrics))
    files["run.json"].write_text(json.dumps({"run_id": f"{seed:032x}", "experiment": "x"}))
    files["curve.csv"].write_text(f"step,train_loss,val_loss,lr\n0,3,3,0.001\n10,{loss},{loss},0\n")
    files["sample.txt"].write_text("sample")


def test_report_takes_the_seeds_of_params_and_says_in_one_line_what_it_ignores(project, capsys):
    layout = Layout.load()
    for cell in CELLS:
        write_cell(layout, cell, seed=1337)
        write_cell(layout, cell, seed=99)  # an earlier run's seed, still on disk
    assert report.main([]) == 0
    out = capsys.readouterr().out
    ignored = [line for line in out.splitlines() if "ignoring" in line]
    assert len(ignored) == 1 and "[99]" in ignored[0]
    table = (project / "experiments/ablation.csv").read_text().splitlines()
    assert len(table) == 1 + 8 and all(",1337," in row for row in table[1:])


def test_report_fails_in_one_line_naming_a_missing_cell(project):
    layout = Layout.load()
    for cell in CELLS[:-1]:
        write_cell(layout, cell, seed=1337)
    with pytest.raises(StageError) as err:
        report.main([])
    assert "\n" not in str(err.value) and "rope+moe+fgram seed 1337" in str(err.value)
    assert not (project / "experiments/report.md").exists()


def test_report_fails_in_one_line_naming_a_cell_without_run_json(project):
    layout = Layout.load()
    for cell in CELLS:
        write_cell(layout, cell, seed=1337)
    gone = layout.run_files(CELLS[0], seed=1337)["run.json"]
    gone.unlink()
    with pytest.raises(InputError) as err:
        report.main([])
    assert "\n" not in str(err.value) and str(err.value).startswith(str(layout.relative(gone)))
    assert not (project / "experiments/report.md").exists()
