"""The report stage follows the registry and params.yaml's grid: it reads the grid's cells,
judges only the switches the grid varies, and says "no verdict" when one seed gives too few
effects to estimate the noise. Built from metrics tables written by hand: no training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from _project import make_project

from nanomoe.switches import BY_NAME, SWITCHES, cells, variant_name
from pipeline.layout import Layout
from pipeline.report import cli as report
from pipeline.report import results
from pipeline.report.analysis import analyse
from pipeline.report.provenance import portable
from pipeline.report.summary import summary
from pipeline.stage import StageError


def grid(**held: list) -> dict[str, list]:
    """A normalised grid: every switch at both levels unless ``held`` lists its levels."""
    return {s.name: [v for v in s.levels if v in held.get(s.name, s.levels)] for s in SWITCHES}


def loss_of(cell: dict, seed: int) -> float:
    """Each switch's high level lowers the loss (bits per byte) by a different amount (0.1,
    0.05, 0.033, 0.025), plus noise of at most 0.001 that differs by cell and seed."""
    high = [cell[s.name] == s.high for s in SWITCHES]
    index = sum(h << i for i, h in enumerate(high))
    noise = np.random.default_rng([index, seed]).uniform(-0.001, 0.001)
    return 2.0 - sum(0.1 / (i + 1) * h for i, h in enumerate(high)) + noise


def write_cell(folder: Path, cell: dict, seed: int, **overrides) -> Path:
    """The four files a train cell leaves for the report, in ``folder``."""
    loss = loss_of(cell, seed)
    metrics = {
        "variant": variant_name(cell), **cell, "seed": seed, "final_val_bpb": loss,
        "best_val_bpb": loss - 0.01, "final_val_loss": loss * 0.7, "best_val_loss": loss * 0.69,
        "best_step": 10, "train_loss": loss - 0.1, "tokens_per_sec": 1000.0, "wall_s": 1.0,
        "steps": 10, "tokens": 640, "bytes_seen": 640, "epochs": 0.5, "vocab_size": 65,
        "flops_per_token": 1e6, "params_total": 100, "params_active": 90, **overrides,
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "run.json").write_text(json.dumps({"run_id": f"{seed:032x}", "experiment": "x"}))
    (folder / "curve.csv").write_text(
        f"step,train_loss,val_loss,val_bpb,lr\n0,3,3,4,0.001\n10,{loss},{loss},{loss},0\n"
    )
    (folder / "sample.txt").write_text(f"sample of {variant_name(cell)}")
    return folder / "metrics.json"


def write_grid(ablation: Path, g: dict, seeds: list[int]) -> None:
    for cell in cells(g):
        for seed in seeds:
            name = "_".join(f"{s.name}-{s.spell(cell[s.name])}" for s in SWITCHES)
            write_cell(ablation / f"{name}_seed-{seed}", cell, seed)


ROPE_HELD = grid(rope=[True], tokenizer=["char"])  # a 2^2 design in moe and fgram


def test_holding_a_switch_leaves_a_2x2_design_whose_3_contrasts_do_not_name_it(tmp_path):
    write_grid(tmp_path, ROPE_HELD, [1])
    df, curves, samples = results.collect(tmp_path, ROPE_HELD, [1])
    assert len(df) == 4 and df.rope.all() and set(curves) == set(samples) == set(df.variant)
    a = analyse(df, ROPE_HELD)
    assert a.factors == ["moe", "fgram"]
    assert a.effects.effect.to_list() == ["moe (main)", "fgram (main)", "moe x fgram"]
    assert a.effects.delta.to_list() == pytest.approx([-0.05, -0.1 / 3, 0.0], abs=0.002)


def test_one_seed_of_a_2x2_design_gives_no_verdict_rather_than_a_guess(tmp_path):
    write_grid(tmp_path, ROPE_HELD, [1])
    df, _, samples = results.collect(tmp_path, ROPE_HELD, [1])
    a = analyse(df, ROPE_HELD)
    # 3 effects are too few for Lenth's PSE: no margin, nothing distinguishable, none best,
    # even though the rope+moe+fgram cell is lowest by a wide gap
    assert a.lenth is None and a.effects.margin.isna().all()
    assert not a.effects.distinguishable.any()
    assert a.ranking.best is None and a.ranking.order[0] == "moe+fgram"
    md = report.render_markdown(df, report.variant_table(df, a.ranking), a, samples, [])
    assert "**Method**: no verdict: one seed and 2 varying switch(es) give 3 effect(s)" in md
    assert "seeds:" in md  # the fix: more seeds
    assert "**No verdict**" in md and "No single best" not in md and "Best variant" not in md
    assert f"| moe (main) | {a.effects.delta[0]:.4f} | – | no verdict | no verdict |" in md
    summ = summary(df, a, ROPE_HELD, [])
    assert summ["method"] == "none" and summ["best_variant"] is None
    assert summ["factors"] == ["moe", "fgram"] and "rope (main)" not in summ["effects"]
    assert all(e["margin"] is None for e in summ["effects"].values())
    json.dumps(summ, allow_nan=False)  # strict JSON: no NaN margin


def test_two_seeds_of_a_2x2_design_are_judged_as_a_replicated_factorial(tmp_path):
    """Kills: summary.json without the method, df or sigma the issue names, and a report
    that does not name the method, sigma and df at the top."""
    write_grid(tmp_path, ROPE_HELD, [1, 2])
    df, _, samples = results.collect(tmp_path, ROPE_HELD, [1, 2])
    a = analyse(df, ROPE_HELD)
    assert a.judged and a.kind == "replicated factorial" and a.noise.df == 3  # (4-1)(2-1)
    assert len(a.effects) == 3 and a.effects.margin.notna().all()
    judged = a.effects.set_index("effect").distinguishable.to_dict()
    assert judged == {"moe (main)": True, "fgram (main)": True, "moe x fgram": False}
    assert a.ranking.best == "moe+fgram"
    summ = summary(df, a, ROPE_HELD, [])
    assert summ["method"] == "replicated factorial" and summ["n_seeds"] == 2
    assert summ["df"] == 3 and summ["sigma"] == pytest.approx(a.noise.sigma)
    assert summ["best_rule"] == "hsu mcb" and summ["spread"]["cochran_c"] > 0
    md = report.render_markdown(df, report.variant_table(df, a.ranking), a, samples, [])
    top = md.split("## Variants")[0]
    assert "replicated 2^2 factorial, 2 seeds as blocks" in top
    assert f"sigma = {a.noise.sigma:.4f}" in top and "df = 3" in top
    assert "## Noise by variant" in md and "Cochran's C" in md and "only a diagnostic" in md
    # 4 variants, blocks removed: C <= 3/4 < its critical value 0.906, so it cannot flag
    assert not a.spread.can_flag and "this design cannot show unequal noise" in md


def test_identical_losses_over_seeds_leave_every_variant_tied_without_crashing(tmp_path):
    """sigma = 0: no margin to divide by, Cochran's C with no variance at all. Kills: the
    Dunnett constant recovered as margin / (sigma sqrt(2/n)) (ZeroDivisionError), and C as
    0/0 (the report printed "C = nan")."""
    for cell in cells(ROPE_HELD):
        for seed in (1, 2):
            name = "_".join(f"{s.name}-{s.spell(cell[s.name])}" for s in SWITCHES)
            write_cell(tmp_path / f"{name}_seed-{seed}", cell, seed, final_val_bpb=2.0)
    df, _, samples = results.collect(tmp_path, ROPE_HELD, [1, 2])
    a = analyse(df, ROPE_HELD)
    assert a.noise.sigma == 0.0 and not a.effects.distinguishable.any()
    assert a.ranking.best is None and len(a.ranking.tied) == 4
    md = report.render_markdown(df, report.variant_table(df, a.ranking), a, samples, [])
    assert "C = 0.000" in md and not re.search(r"\bnan\b", md)
    with pytest.raises(ValueError, match="every variant needs a loss for every seed"):
        analyse(df.iloc[1:], ROPE_HELD)  # one run missing


def test_the_baseline_is_the_grids_all_low_cell(tmp_path):
    write_grid(tmp_path, ROPE_HELD, [1])
    df, _, _ = results.collect(tmp_path, ROPE_HELD, [1])
    summ = summary(df, analyse(df, ROPE_HELD), ROPE_HELD, [])
    assert summ["baseline_variant"] == "no-moe-fgram"  # rope and the tokenizer held: unnamed
    assert summ["metric"] == "final_val_bpb"
    low = {s.name: s.low for s in SWITCHES}
    assert summ["dense_final_val_bpb"] == loss_of({**low, "rope": True}, 1)


def test_a_grid_that_varies_no_switch_has_no_effects_and_no_best_variant(tmp_path):
    fixed = grid(**{s.name: [s.low] for s in SWITCHES})
    write_grid(tmp_path, fixed, [1, 2])
    for seeds in ([1], [1, 2]):
        df, _, samples = results.collect(tmp_path, fixed, seeds)
        a = analyse(df, fixed)
        assert a.effects.empty and not a.judged and a.ranking.best is None
        md = report.render_markdown(df, report.variant_table(df, a.ranking), a, samples, [])
        assert "No effects" in md and "**No verdict**" in md
        assert summary(df, a, fixed, [])["method"] == "none"


def test_cells_outside_the_grid_or_the_seeds_are_ignored_with_one_note(tmp_path, capsys):
    write_grid(tmp_path, grid(), [1, 2])  # an earlier 2^4 grid, two seeds
    df, _, _ = results.collect(tmp_path, ROPE_HELD, [1])
    assert len(df) == 4 and df.rope.all() and (df.seed == 1).all()
    notes = capsys.readouterr().out.splitlines()
    assert len(notes) == 1 and notes[0].startswith("ignoring 28 run(s) on disk")
    assert "abspos-moe-fgram-bpe" in notes[0] and "seeds [2]" in notes[0]


@pytest.mark.parametrize("value", [1, 0, "true", None], ids=repr)
def test_a_switch_column_that_is_not_one_of_its_levels_stops_in_one_line(tmp_path, value):
    write_grid(tmp_path, ROPE_HELD, [1])
    odd = {**dict.fromkeys(BY_NAME, True), "tokenizer": "char"}
    bad = write_cell(tmp_path / "odd", odd, 1, moe=value)
    with pytest.raises(StageError) as err:
        results.collect(tmp_path, ROPE_HELD, [1])
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{bad}: moe: {value!r} is not one of")
    assert line.endswith("; re-run its train stage (dvc repro)")


def test_the_report_stage_writes_the_grids_cells_and_logs_the_grid(tmp_path, monkeypatch):
    held = {"rope": [True], "tokenizer": ["char"]}
    root = make_project(tmp_path, overrides={"grid": held, "seeds": [1, 2]})
    monkeypatch.chdir(root)
    for key in ("DVC_ROOT", "MLFLOW_TRACKING_URI", "NANOMOE_DATA_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    layout = Layout.load()
    for cell in cells(grid(**held)):
        for seed in (1, 2):
            write_cell(layout.run_files(cell, seed)["metrics.json"].parent, cell, seed)
    assert report.main([]) == 0
    table = pd.read_csv(root / "experiments/ablation.csv")
    assert table.columns[: len(results.COLUMNS)].to_list() == results.COLUMNS
    assert table.columns.to_list()[1:6] == [*BY_NAME, "seed"] and len(table) == 8
    assert {"final_val_bpb", "best_val_bpb", "bytes_seen", "epochs"} <= set(table.columns)
    summ = json.loads((root / "experiments/summary.json").read_text())
    assert summ["factors"] == ["moe", "fgram"]
    assert summ["baseline_variant"] == "no-moe-fgram"
    md = (root / "experiments/report.md").read_text(encoding="utf-8")
    # the names and the table name the factors only; the held ones are said in the header.
    # Kills: variant names spelling every switch (``rope-moe-fgram-bpe``, "-bpe" for a
    # tokenizer never varied), or the effects column headed "val loss" in a bpb report
    assert "held fixed: rope on, tokenizer char" in md
    assert "| variant | moe | fgram | final val bpb" in md
    assert "| `no-moe-fgram` | off | off |" in md and "bpe" not in md.split("## Samples")[0]
    head = "| effect | Δ final val bpb | 90% interval | distinguishable from noise | verdict |"
    assert head in md
    verdicts = {e["verdict"] for e in summ["effects"].values()}
    assert verdicts <= {"real", "negligible", "undetermined"}
    # a committed file: the store named relative to the project (Kills: the absolute path)
    assert str(root) not in md and "`sqlite:///mlflow.db`" in md
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["x"], output_format="list")
    params = run.data.params
    key = "moe_x_fgram"  # each effect's verdict, as a tag of the summary run
    assert run.data.tags[f"verdict.{key}"] == summ["effects"]["moe x fgram"]["verdict"]
    assert params["analysis.equivalence_margin"] == "0.01"
    assert params["grid.rope"] == "[true]" and params["grid.moe"] == "[false, true]"
    assert not {f"model.{name}" for name in BY_NAME} & set(params)
    assert yaml.safe_load(params["grid.fgram"]) == [False, True]


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("sqlite:////proj/mlflow.db", "sqlite:///mlflow.db"),
        ("sqlite:////elsewhere/x/mlflow.db", "sqlite:///.../mlflow.db"),
        ("file:///proj/mlruns", "mlruns"),
        ("http://alice:s3cret@tracking:5000", "http://alice:***@tracking:5000"),
        ("postgresql+psycopg://bob:pw@db/mlflow", "postgresql+psycopg://bob:***@db/mlflow"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_report_md_names_the_store_without_an_absolute_path_or_a_password(uri, shown):
    """Kills: portable() passing the URI through (report.md is committed: a path of one
    machine, or a password, must not land in git)."""
    assert portable(uri, Path("/proj")) == shown


def test_no_committed_result_names_an_absolute_path():
    """The reports, tables and summaries in experiments/ are read on other machines: none
    names a folder of the one that wrote it. Kills: report.md's store written as the
    absolute ``sqlite:////<path>/mlflow.db`` (provenance_lines given tracking_uri() as is)."""
    repo = Path(__file__).resolve().parents[1]
    absolute = re.compile(r"sqlite:////|file:///[^.]|(?<![\w.:/])/(?:work|home|root|tmp|Users)/")
    for path in sorted((repo / "experiments").rglob("*")):
        if path.suffix in (".md", ".json", ".csv"):
            text = path.read_text(encoding="utf-8")
            found = absolute.search(text)
            assert not found, f"{path.relative_to(repo)}: {found[0]!r}"
