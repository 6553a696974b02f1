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
from nanomoe.switches import (
    cells,
    config_fields,
    data_files,
    full,
    full_grid,
    grid_variant,
    variant_name,
)
from pipeline import tracking
from pipeline.data import download, prepare, tokenizer
from pipeline.layout import Layout, project_root
from pipeline.ops import grid
from pipeline.params import load_params
from pipeline.params.sections import KEYS
from pipeline.report import cli as report
from pipeline.stage import ParamsError, StageError

REPO = Path(__file__).resolve().parents[1]
ALL_CELLS = cells(full_grid())  # both tokenizers: 16 cells
CELLS = cells(load_params(REPO / "params.yaml").grid)  # the shipped grid's, the project's too
CHAR = ["--tokenizer", "char"]  # the char tokenizer's data stage instances


def full_layout(root: Path = REPO) -> Layout:
    """``root``'s dvc.yaml with the grid's stages written for the full grid (both
    tokenizers), as `python -m pipeline.grid` writes them for ``grid.tokenizer: [char, bpe]``."""
    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    return Layout(root, yaml.safe_load(grid.rewrite(text, full_grid(), REPO))["stages"])


def data_deps(layout: Layout, stage: str, **item: str) -> set[Path]:
    """The data deps of one instance of a matrix stage: ``${item.<key>}`` filled in."""
    deps = set()
    for dep in layout.data_deps(stage):
        path = str(dep)
        for key, value in item.items():
            path = path.replace(f"${{item.{key}}}", value)
        assert "${" not in path, f"{stage}: {path} names an item the test did not fill in"
        deps.add(Path(path))
    return deps


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
    assert download.main([]) == 0
    assert tokenizer.main(list(CHAR)) == 0 and prepare.main(list(CHAR)) == 0
    assert (project / "data/shards/corpus.txt").exists()
    assert not (project / "data/raw").exists()
    assert (project / "data/char/tokenizer.json").exists()
    assert (project / "data/char/prepared/meta.json").exists()


def test_a_cells_files_are_the_outs_of_its_train_stage():
    layout = Layout.load(REPO)
    levels = {"rope": True, "moe": False, "fgram": True, "tokenizer": "char"}
    files = layout.run_files(levels, seed=7)
    cell = REPO / "experiments/ablation/rope-true_moe-false_fgram-true_tokenizer-char_seed-7"
    names = ("ckpt.pt", "sample.txt", "curve.png", "run.json", "metrics.json", "curve.csv")
    assert files == {n: cell / n for n in names}
    assert layout.train_stage(levels) == "train_fgram"
    bpe = {**levels, "tokenizer": "bpe"}
    folder = "experiments/ablation/rope-true_moe-false_fgram-true_tokenizer-bpe_seed-7"
    assert full_layout().run_files(bpe, seed=7) == {n: REPO / folder / n for n in names}
    assert full_layout().train_stage(bpe) == "train_fgram_tokenizer"


@pytest.mark.parametrize("levels", ALL_CELLS, ids=[variant_name(c) for c in ALL_CELLS])
def test_every_stage_declares_the_upstream_files_it_reads(levels):
    """Kills: a switch's data (the registry's ``data``) left out of its cells' deps, or
    given to cells that do not use it; a cell, or a data stage instance, reading another
    tokenizer's files (``data/char/...`` for a bpe cell)."""
    layout = full_layout()
    kind = levels["tokenizer"]
    assert data_deps(layout, "tokenizer", tokenizer=kind) == {layout.raw}
    assert data_deps(layout, "prepare", tokenizer=kind) == {layout.raw, layout.tokenizer(kind)}
    assert data_deps(layout, "mine_fgrams", tokenizer=kind) == {layout.prepared(kind)}
    train = layout.data_deps(layout.train_stage(levels))
    expected = {layout.tokenizer(kind), layout.prepared(kind)}
    expected |= {layout.fgrams(kind)} if levels["fgram"] else set()
    assert set(train) == expected
    assert set(train) == {REPO / p for p in data_files(levels)}  # the registry's ``data``
    assert all(kind in p.relative_to(REPO).parts for p in train)
    cell = layout.run_files(levels, seed=1)["metrics.json"].parent
    assert cell.parent == layout.ablation  # the report reads where every cell writes


def test_a_missing_input_names_the_stage_that_writes_it(project):
    """Kills: require() naming the matrix stage without its instance (``dvc repro prepare``
    runs every tokenizer's), or another tokenizer's instance."""
    fix = r"run the prepare@char stage first \(dvc repro prepare@char\)$"
    with pytest.raises(StageError, match=rf"^data/char/prepared: not found; {fix}"):
        Layout.load().require(Layout.load().prepared("char"))
    layout = full_layout(project)
    with pytest.raises(StageError, match=r"^data/bpe/tokenizer.json: not found; run the tok"):
        layout.require(layout.tokenizer("bpe"))
    with pytest.raises(StageError, match=r"\(dvc repro mine_fgrams@bpe\)$"):
        layout.require(layout.fgrams("bpe"))


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
        "seed": seed, "final_val_bpb": loss, "best_val_bpb": loss - 0.01,
        "final_val_loss": loss * 0.7, "best_val_loss": loss * 0.69, "best_step": 10,
        "train_loss": loss - 0.1, "tokens_per_sec": 1000.0, "wall_s": 1.0, "steps": 10,
        "tokens": 640, "bytes_seen": 640, "epochs": 0.5, "vocab_size": 65,
        "flops_per_token": 1e6, "params_total": 100, "params_active": 90,
    }  # fmt: skip
    files["metrics.json"].parent.mkdir(parents=True, exist_ok=True)
    files["metrics.json"].write_text(json.dumps(metrics))
    files["run.json"].write_text(json.dumps({"run_id": f"{seed:032x}", "experiment": "x"}))
    files["curve.csv"].write_text(
        f"step,train_loss,val_loss,val_bpb,lr\n0,3,3,4,0.001\n10,{loss},{loss},{loss},0\n"
    )
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
    assert len(table) == 1 + len(CELLS) and all(",1337," in row for row in table[1:])


def test_report_fails_in_one_line_naming_a_missing_cell(project):
    layout = Layout.load()
    for cell in CELLS[:-1]:
        write_cell(layout, cell, seed=1337)
    with pytest.raises(StageError) as err:
        report.main([])
    # named for the factors the shipped grid varies: the tokenizer held at char is not named
    name = grid_variant(CELLS[-1], load_params(REPO / "params.yaml").grid)
    assert name == "rope+moe+fgram"
    assert "\n" not in str(err.value) and f"{name} seed 1337" in str(err.value)
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
