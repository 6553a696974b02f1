"""The README's recipe for a new switch, followed in a throwaway project: a registry entry for an
existing boolean config field (``bias``), its levels under ``grid:``, ``python -m pipeline.grid``.
Then DVC lists 16 cells, the new switch alone trains, and a 16-cell table is judged by Lenth with
m = 15. The model code and the config field already exist, so this touches two files."""

from __future__ import annotations

import json

import pytest
from _cells import NEW_SWITCH, set_grid, write_cell
from _project import make_project, run_module
from scipy import stats


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The recipe: a registry entry and a grid: key, then python -m pipeline.grid."""
    root = make_project(tmp_path_factory.mktemp("fourth"))
    registry = root / "nanomoe" / "switches.py"
    text = registry.read_text(encoding="utf-8")
    assert text.count("\n)\nBY_NAME") == 1
    registry.write_text(text.replace("\n)\nBY_NAME", f"\n{NEW_SWITCH})\nBY_NAME"))
    full = {"rope": [False, True], "moe": [False, True], "fgram": [False, True]}
    set_grid(root, {**full, "bias": [False, True]})
    assert run_module(root, "dvc", "init", "--no-scm", "-q").returncode == 0
    return root


def test_dvc_lists_sixteen_cells_named_in_registry_order(project):
    listed = run_module(project, "dvc", "stage", "list", "--name-only")
    assert listed.returncode == 0, listed.stderr
    trains = [n for n in listed.stdout.split() if n.startswith("train")]
    assert len(trains) == 16
    # rope, moe, fgram, tokenizer (held at char), bias, seed: the new switch goes last
    assert "train_moe_fgram@true-true-true-char-true-1337" in trains


def test_the_new_switch_alone_trains_and_the_grid_wins_over_model_bias(project):
    """bias alone, every other switch held off: two tiny cells through ``dvc repro``.
    ``model.bias`` is false in params.yaml; the bias cell still has bias, because a
    switch's level in the cell wins over the ``model:`` section. Kills: the cell's config
    built from ``model:`` without its switches' levels (both cells the same size)."""
    set_grid(project, {"rope": [False], "moe": [False], "fgram": [False], "bias": [False, True]})
    out = run_module(project, "dvc", "repro")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("Running stage 'train") == 2
    cells = sorted((project / "experiments" / "ablation").glob("*/metrics.json"))
    metrics = [json.loads(p.read_text()) for p in cells]
    # named for the grid's one factor: the held ones (rope, moe, fgram, tokenizer) unnamed
    assert {m["variant"] for m in metrics} == {"no-bias", "bias"}
    with_bias = {m["bias"]: m["params_total"] for m in metrics}
    assert with_bias[True] > with_bias[False]  # the biases are there: the grid won
    summary = json.loads((project / "experiments" / "summary.json").read_text())
    assert sorted(summary["effects"]) == ["bias (main)"]
    assert summary["method"] == "none"  # one seed, m = 1: no verdict rather than a guess


def test_a_sixteen_cell_table_has_fifteen_contrasts_judged_by_lenth_with_m_15(project):
    grid = {"rope": [False, True], "moe": [False, True], "fgram": [False, True]}
    set_grid(project, {**grid, "bias": [False, True]})
    for i, (rope, moe, fgram, bias) in enumerate(
        (r, m, f, b) for r in (0, 1) for m in (0, 1) for f in (0, 1) for b in (0, 1)
    ):
        levels = {"rope": bool(rope), "moe": bool(moe), "fgram": bool(fgram)}
        levels |= {"tokenizer": "char", "bias": bool(bias)}  # registry order
        loss = 2.0 - 0.2 * rope - 0.1 * bias + 0.001 * ((i * 7) % 5)
        write_cell(project, levels, 1337, loss)
    out = run_module(project, "pipeline.report")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((project / "experiments" / "summary.json").read_text())
    assert len(summary["effects"]) == 15 and "rope x moe x fgram x bias" in summary["effects"]
    assert summary["method"] == "lenth"
    lenth = summary["lenth"]
    assert lenth["me"] / lenth["pse"] == pytest.approx(stats.t.ppf(0.975, 15 / 3))
    assert summary["effects"]["rope (main)"]["distinguishable"]
