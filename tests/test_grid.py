"""``grid:`` in params.yaml chooses the factors, and ``python -m pipeline.grid`` writes dvc.yaml's
train stages from it and the switch registry: one stage per combination of the switches that
need data or settings, names and folders as DVC has always spelled them."""

from __future__ import annotations

import pytest
import yaml
from _project import REPO, make_project, run_module

from nanomoe.switches import cells, full_grid
from pipeline.ops.grid import DATA_STAGES, rewrite, share, targets, train_stages
from pipeline.params import load_params
from pipeline.params.grid import read_grid
from pipeline.stage import ParamsError

LOCKED = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def stages_of(grid: dict) -> dict:
    """The train stages ``train_stages`` writes for ``grid``, parsed (without the data
    stages it writes first)."""
    stages = yaml.safe_load("stages:\n" + train_stages(grid))["stages"]
    return {name: spec for name, spec in stages.items() if name not in DATA_STAGES}


def cells_of(stages: dict) -> set[tuple]:
    """Every (rope, moe, fgram, tokenizer) the stages' matrices hold."""
    return {
        (r, m, f, t)
        for spec in stages.values()
        for r in spec["matrix"]["rope"]
        for m in spec["matrix"]["moe"]
        for f in spec["matrix"]["fgram"]
        for t in spec["matrix"]["tokenizer"]
    }


def dvc_train_stages() -> set[str]:
    """The train stages DVC lists for the repo's dvc.yaml, as DVC names the matrix's."""
    listed = run_module(REPO, "dvc", "stage", "list", "--name-only")
    assert listed.returncode == 0, listed.stderr
    return {name for name in listed.stdout.split() if name.startswith("train")}


def test_the_committed_dvc_yaml_is_what_pipeline_grid_writes_from_params_yaml():
    """Kills: a hand edit of a train stage, a registry or generator change without
    re-running ``python -m pipeline.grid``, or a grid edit left unwritten."""
    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    assert rewrite(text, load_params(REPO / "params.yaml").grid, REPO) == text


def test_every_locked_train_stage_keeps_its_name_and_cell_folder():
    """dvc.lock's entries stay valid: DVC names the generated stages and folders as the
    registry spells a cell (``train_fgram@true-false-true-char-1337``, folder
    ``rope-true_moe-false_fgram-true_tokenizer-char_seed-1337``). Kills: a matrix key order
    other than the registry's, seeds moved out of the matrix, the folder pattern respelled,
    or dvc.lock left behind by a renaming (its cells' results then belong to no stage)."""
    params = load_params(REPO / "params.yaml")
    seeds = tuple(f"-{seed}" for seed in params.seeds)
    locked = {name for name in LOCKED if name.startswith("train") and name.endswith(seeds)}
    trains = dvc_train_stages()
    unrun, gone = sorted(trains - locked), sorted(locked - trains)
    assert not unrun, f"dvc.lock has no record of {len(unrun)} train stage(s), e.g. {unrun[0]}"
    assert not gone, (
        f"dvc.lock records {len(gone)} train stage(s) dvc.yaml does not have, e.g. {gone[0]}; "
        "delete their entries from dvc.lock"
    )
    assert len(locked) == len(cells(params.grid)) * len(seeds)
    assert "train_moe_fgram@true-true-true-char-1337" in trains
    for name in locked:
        rope, moe, fgram, tokenizer, seed = name.split("@")[1].split("-")
        cell = f"rope-{rope}_moe-{moe}_fgram-{fgram}_tokenizer-{tokenizer}_seed-{seed}"
        folder = f"experiments/ablation/{cell}"
        assert all(o["path"].startswith(folder + "/") for o in LOCKED[name]["outs"])


def test_each_cell_depends_only_on_the_data_and_settings_its_switches_use():
    """Kills: F-gram data or fgram.* given to cells without F-grams, moe.* to dense cells,
    tokenizer.match_bytes to char cells, a cell reading another tokenizer's data (or none:
    every cell reads its own tokenizer and prepared splits), or grid: made a params dep of
    the train stages (editing it would retrain every cell)."""
    stages = stages_of(read_grid(None))
    assert len(stages) == 8  # one per combination of moe, fgram and tokenizer
    for spec in stages.values():
        fgram, moe = spec["matrix"]["fgram"] == [True], spec["matrix"]["moe"] == [True]
        (tok,) = spec["matrix"]["tokenizer"]
        data = [d for d in spec["deps"] if d.startswith("data/")]
        own = [f"data/{tok}/tokenizer.json", f"data/{tok}/prepared"]
        assert data == own + [f"data/{tok}/fgrams.json"] * fgram
        assert ({"fgram.max_n", "fgram.n_head"} <= set(spec["params"])) == fgram
        assert ("moe" in spec["params"]) == moe
        assert ("tokenizer.match_bytes" in spec["params"]) == (tok == "bpe")
        assert "grid" not in spec["params"] and "seeds" not in spec["params"]
        assert spec["matrix"]["seed"] == "${seeds}"


def test_holding_a_factor_at_one_level_writes_only_its_cells():
    """``grid.rope: [true]`` gives a 2^2 ablation: four cells per seed, all with RoPE; a
    held switch that needs data writes no stage for its other level. Kills: the grid's
    levels ignored, or a stage written for a level the grid leaves out."""
    held = stages_of(read_grid({"rope": [True], "moe": [False, True], "fgram": [False, True]}))
    assert cells_of(held) == {(True, m, f, "char") for m in (False, True) for f in (False, True)}
    no_fgram = stages_of(read_grid({"fgram": [False], "moe": [True, False]}))
    assert set(no_fgram) == {"train", "train_moe"}
    assert cells_of(no_fgram) == {(False, False, False, "char"), (False, True, False, "char")}
    bpe = read_grid(
        {"rope": [False, True], "moe": [True], "fgram": [False, True], "tokenizer": ["bpe"]}
    )
    assert set(stages_of(bpe)) == {"train_moe_tokenizer", "train_moe_fgram_tokenizer"}
    assert cells_of(stages_of(bpe)) == {(r, True, f, "bpe") for r in (0, 1) for f in (0, 1)}
    data = yaml.safe_load("stages:\n" + train_stages(bpe))["stages"]
    assert all(data[name]["matrix"] == {"tokenizer": ["bpe"]} for name in DATA_STAGES)
    both = yaml.safe_load("stages:\n" + train_stages(full_grid()))["stages"]
    assert all(both[name]["matrix"] == {"tokenizer": ["char", "bpe"]} for name in DATA_STAGES)


@pytest.mark.parametrize(
    ("grid", "key"),
    [
        ({"qknorm": [False, True]}, "grid.qknorm: unknown switch"),
        ({"rope": ["maybe"]}, "grid.rope: 'maybe' is not a level of rope"),
        ({"rope": [1]}, "grid.rope: 1 is not a level of rope"),
        ({"moe": []}, "grid.moe: must be a non-empty list"),
        ({"moe": [True, True]}, "grid.moe: has repeated levels"),
        ([True], "grid: must map each switch"),
    ],
)
def test_a_bad_grid_is_one_line_naming_its_key(grid, key):
    """Kills: an unknown switch or level passed on to DVC, whose own error names no key."""
    with pytest.raises(ParamsError, match=f"^params.yaml: {key}"):
        read_grid(grid)


def test_pipeline_grid_refuses_a_bad_grid_in_one_line_and_leaves_dvc_yaml_alone(tmp_path):
    root = make_project(tmp_path, overrides={"grid": {"rope": [False, True], "swiglu": [True]}})
    before = (root / "dvc.yaml").read_text(encoding="utf-8")
    out = run_module(root, "pipeline.grid")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: params.yaml: grid.swiglu: unknown switch; switches are rope, moe, fgram, "
        "tokenizer (nanomoe/switches.py), and the design's keys are fraction and generators"
    ]
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == before


def test_pipeline_grid_rewrites_the_train_stages_and_check_finds_them_stale(tmp_path):
    held = {"rope": [True], "moe": [False], "tokenizer": ["char"]}
    root = make_project(tmp_path, overrides={"grid": held})
    stale = run_module(root, "pipeline.grid", "--check")
    assert stale.returncode == 2 and "run python -m pipeline.grid" in stale.stderr
    assert run_module(root, "pipeline.grid").returncode == 0
    assert run_module(root, "pipeline.grid", "--check").returncode == 0
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    trains = {name: s for name, s in stages.items() if name.startswith("train")}
    assert set(trains) == {"train", "train_fgram"}
    assert cells_of(trains) == {(True, False, False, "char"), (True, False, True, "char")}
    assert {"download", "tokenizer", "prepare", "mine_fgrams", "report"} <= set(stages)


def test_the_report_of_a_grid_dvc_yaml_was_not_written_for_names_pipeline_grid(tmp_path):
    """A grid edited without ``python -m pipeline.grid``: the report says to run it, rather
    than asking for cells no stage trains. Kills: the report's stage check removed."""
    root = make_project(tmp_path)
    (root / "experiments" / "ablation").mkdir(parents=True)
    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    (root / "dvc.yaml").write_text(
        rewrite(text, read_grid({"rope": [True]}), root), encoding="utf-8"
    )
    out = run_module(root, "pipeline.report")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: dvc.yaml: no train stage holds abspos-moe-fgram-bpe; run python -m pipeline.grid "
        "to write the train stages from params.yaml's grid:"
    ]


def test_targets_name_every_locked_train_stage_slowest_first_and_shares_split_them():
    """``pipeline.grid --targets`` is the one list of the cells' stage targets: exactly the
    train stages DVC knows (``dvc stage list``), the cells with MoE and F-grams on first, and
    the I/N shares cover it once. Kills: a target spelled unlike DVC's matrix names, a seed
    or a cell left out, or shares that overlap."""
    listed = targets(load_params(REPO / "params.yaml").grid, [1337])
    assert sorted(listed) == sorted(k for k in dvc_train_stages() if k.endswith("-1337"))
    assert listed[0].startswith("train_moe_fgram") and listed[-1].startswith("train@")
    every = targets(full_grid(), [1])
    assert len(every) == len(set(every)) == 16
    assert every[0] == "train_moe_fgram_tokenizer@false-true-true-bpe-1"
    parts = [share(every, f"{i}/3") for i in range(3)]
    assert sorted(t for p in parts for t in p) == sorted(every)
    assert [len(p) for p in parts] == [6, 5, 5]
    assert len(targets({"rope": [True], "moe": [False, True], "fgram": [False]}, [1, 2])) == 4


def test_targets_refuse_a_stale_dvc_yaml_and_a_bad_share_in_one_line(tmp_path):
    held = {"rope": [True], "moe": [False], "tokenizer": ["char"]}
    root = make_project(tmp_path, overrides={"grid": held})
    stale = run_module(root, "pipeline.grid", "--targets")
    assert stale.returncode == 2 and "run python -m pipeline.grid first" in stale.stderr
    assert run_module(root, "pipeline.grid").returncode == 0
    listed = run_module(root, "pipeline.grid", "--targets")
    assert listed.stdout.split() == [
        "train_fgram@true-false-true-char-1337",
        "train@true-false-false-char-1337",
    ]
    bad = run_module(root, "pipeline.grid", "--targets", "--share", "2/2")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --share: '2/2' is not I/N")
