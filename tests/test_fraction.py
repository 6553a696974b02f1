"""Fractional designs: the committed 2^4 (experiments/tokenizer/) cut in half, its fold-over,
the default generators' minimum aberration, a 2^(5-1) grid written and reported, and every
bad design refused in one line."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest
import yaml
from _cells import NEW_SWITCH, set_grid, write_cell
from _project import REPO, make_project, run_module

from nanomoe.switches import grid_variant
from pipeline.design import plan
from pipeline.design.fraction import GENERATORS, LETTERS, Design, design
from pipeline.params.load import coded
from pipeline.report.analysis import analyse

FACTORS = ["rope", "moe", "fgram", "tokenizer"]  # A, B, C, D
GRID4 = {"rope": [False, True], "moe": [False, True], "fgram": [False, True]}
GRID4["tokenizer"] = ["char", "bpe"]


def tokenizer_run() -> pd.DataFrame:
    df = pd.read_csv(REPO / "experiments" / "tokenizer" / "ablation.csv")
    df["variant"] = [grid_variant(r, GRID4) for r in df.to_dict("records")]
    return df


def half(df: pd.DataFrame, generator: str) -> tuple[pd.DataFrame, Design]:
    d = design(FACTORS, "1/2", [generator])
    keep = [d.keeps(coded({f: r[f] for f in FACTORS})) for r in df.to_dict("records")]
    return df[keep], d


@pytest.mark.parametrize(
    "generator, moe, rope_x_moe",
    [("D = ABC", -0.0176, -0.0361), ("D = -ABC", -0.0672, +0.0263)],
)
def test_half_of_the_tokenizer_run_reproduces_the_issues_aliased_contrasts(
    generator, moe, rope_x_moe
):
    """I = +ABCD: moe estimates moe + rope x fgram x tokenizer (-0.0424 + 0.0248), rope x moe
    estimates rope x moe + fgram x tokenizer; I = -ABCD subtracts them. Kills: the wrong half
    kept (signs swapped), or an alias chain printed with the wrong sign."""
    cells, d = half(tokenizer_run(), generator)
    assert len(cells) == 16 and d.resolution == 4  # 8 cells x 2 seeds
    e = analyse(cells, GRID4, design=d).effects.set_index("effect")
    assert round(e.delta["moe (main)"], 4) == moe
    assert round(e.delta["rope x moe"], 4) == rope_x_moe
    sign = "+" if generator == "D = ABC" else "-"
    assert e.aliases["moe (main)"] == f"moe {sign} rope x fgram x tokenizer"
    assert e.aliases["rope x moe"] == f"rope x moe {sign} fgram x tokenizer"
    assert len(e) == 7 and "moe x fgram" not in e.index  # named once, by rope x tokenizer


def test_the_fold_over_union_is_the_full_design_and_its_halves_separate_the_aliases():
    """The full design's 15 effects, exactly, from the union; and each main effect is the
    mean of the two halves' estimates (A + BCD and A - BCD), its alias half their
    difference. Kills: a fold-over analysed with the half's aliases, or a half's alias sign."""
    df = tokenizer_run()
    full = analyse(df, GRID4).effects.set_index("effect").delta
    folded = analyse(df, GRID4, design=design(FACTORS, "foldover", None))
    assert folded.effects.set_index("effect").delta.to_dict() == full.to_dict()
    assert len(full) == 15 and not folded.effects.aliases.any()
    (hp, dp), (hm, dm) = half(df, "D = ABC"), half(df, "D = -ABC")
    plus, minus = analyse(hp, GRID4, design=dp), analyse(hm, GRID4, design=dm)
    p, m = plus.effects.set_index("effect").delta, minus.effects.set_index("effect").delta
    assert (p["moe (main)"] + m["moe (main)"]) / 2 == pytest.approx(full["moe (main)"], abs=1e-12)
    assert (p["moe (main)"] - m["moe (main)"]) / 2 == pytest.approx(
        full["rope x fgram x tokenizer"], abs=1e-12
    )


def test_plan_halves_prints_both_halves_of_the_tokenizer_run_and_the_fold_over_check(capsys):
    """The README's table, from the code: rope x moe is undetermined in the full design but
    called real by each half, with opposite signs, through fgram x tokenizer. Kills: the
    second half not the first's sign flipped, or the fold-over check against the wrong sum."""
    assert plan.main(["--halves", str(REPO / "experiments/tokenizer/ablation.csv")]) == 0
    out = capsys.readouterr().out
    assert "| moe (main) | -0.0424 real | -0.0176 real | moe + rope x fgram x tokenizer " in out
    assert (
        "| rope x moe | -0.0049 undetermined | -0.0361 real | rope x moe + fgram x tokenizer "
        "| +0.0263 real | rope x moe - fgram x tokenizer |" in out
    )
    worst = float(out.split("to within ")[1].split(" bpb")[0])
    assert worst < 1e-12


def wordlength_pattern(words: list[frozenset]) -> tuple[int, ...]:
    """How many defining words of each length, from 3 up: aberration compares these."""
    relation = []
    for r in range(1, len(words) + 1):
        for combo in itertools.combinations(words, r):
            w = frozenset()
            for x in combo:
                w = w ^ x
            relation.append(w)
    k = max(len(w) for w in relation)
    return tuple(sum(len(w) == n for w in relation) for n in range(1, k + 2))


@pytest.mark.parametrize("k, p", sorted(GENERATORS))
def test_the_default_generators_have_minimum_aberration(k, p):
    """Every alternative set of p generators (the last p factors, each the product of two or
    more base factors) has a word-length pattern no smaller. Kills: a table entry that is
    a valid design but not the minimum-aberration one (e.g. F = ABC for 2^(6-1))."""
    factors = list(LETTERS[:k])
    ours = wordlength_pattern(
        [w for _, w in design(factors, "1/2" if p == 1 else "1/4", None).words]
    )
    base = factors[: k - p]
    subsets = [
        frozenset(c) for r in range(2, len(base) + 1) for c in itertools.combinations(base, r)
    ]
    best = min(
        wordlength_pattern([s | {factors[k - p + i]} for i, s in enumerate(choice)])
        for choice in itertools.product(subsets, repeat=p)
        if len(set(choice)) == p
    )
    assert ours == best


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    """A fifth switch (bias, the README's recipe) and a 2^(5-1) half of rope, moe, fgram,
    tokenizer and bias over two seeds."""
    root = make_project(tmp_path_factory.mktemp("five"), overrides={"seeds": [1, 2]})
    registry = root / "nanomoe" / "switches.py"
    text = registry.read_text(encoding="utf-8")
    registry.write_text(text.replace("\n)\nBY_NAME", f"\n{NEW_SWITCH})\nBY_NAME"))
    grid = {**GRID4, "bias": [False, True], "fraction": "1/2"}
    set_grid(root, grid)
    assert run_module(root, "dvc", "init", "--no-scm", "-q").returncode == 0
    return root


def test_a_half_of_five_switches_writes_sixteen_cells_per_seed_at_resolution_v(five):
    """E = ABCD: 16 of 32 cells, each seed a stage; every main effect and two-factor
    interaction aliased with three-factor or higher ones only. Kills: pipeline.grid writing
    the whole grid, or a stage's matrix spanning cells outside the fraction."""
    listed = run_module(five, "dvc", "stage", "list", "--name-only")
    assert listed.returncode == 0, listed.stderr
    trains = [n for n in listed.stdout.split() if n.startswith("train")]
    assert len(trains) == 32 and len({t.rsplit("-", 1)[0] for t in trains}) == 16
    d = design(["rope", "moe", "fgram", "tokenizer", "bias"], "1/2", None)
    assert d.generators == ("E = ABCD",) and d.resolution == 5
    for chain in d.estimates():
        head, *aliases = chain
        if len(head[1]) <= 2:
            assert all(len(c) >= 3 for _, c in aliases), chain
    for t in trains:  # each cell in the half I = +ABCDE: an even number of low levels
        levels = t.split("@")[1].split("-")[:-1]
        assert sum(v in ("false", "char") for v in levels) % 2 == 0


def test_the_report_of_a_fraction_names_its_design_and_warns_of_aliases_first(five):
    """Kills: a fraction reported as a full design (no resolution, no defining relation, the
    method naming a 2^5 factorial), its aliases left out of report.md or summary.json, or df
    from the whole grid's cells."""
    d = design(["rope", "moe", "fgram", "tokenizer", "bias"], "1/2", None)
    for i, cell in enumerate(c for c in itertools.product(*GRID4.values(), [False, True])):
        levels = dict(zip([*GRID4, "bias"], cell, strict=True))
        if not d.keeps({k: 1 if v in (True, "bpe") else -1 for k, v in levels.items()}):
            continue
        for seed in (1, 2):
            loss = 2.0 - 0.2 * levels["rope"] + 0.001 * ((i * 7 + seed) % 5)
            write_cell(five, levels, seed, loss)
    out = run_module(five, "pipeline.report")
    assert out.returncode == 0, out.stderr[-3000:]
    summ = json.loads((five / "experiments" / "summary.json").read_text())
    assert summ["design"] == {
        "fraction": "1/2",
        "generators": ["E = ABCD"],
        "defining_relation": "I = ABCDE",
        "resolution": 5,
    }
    assert len(summ["effects"]) == 15 and summ["df"] == 15  # (16 - 1)(2 - 1)
    rope = summ["effects"]["rope (main)"]
    assert rope["aliases"] == "rope + moe x fgram x tokenizer x bias"
    md = (five / "experiments" / "report.md").read_text(encoding="utf-8")
    first = md.split("\n\n")[1]
    assert "resolution V" in first and "I = ABCDE" in first
    assert "verdict is about its whole alias chain" in first
    assert "**Method**: replicated 2^(5-1) fraction, 2 seeds as blocks" in md


def test_a_fold_over_keeps_the_first_halfs_stages_and_adds_the_other(five):
    """Kills: the fold-over written as the full grid's matrix stages, whose new names would
    orphan the first half's dvc.lock entries."""
    halfway = (five / "dvc.yaml").read_text(encoding="utf-8")
    params = yaml.safe_load((five / "params.yaml").read_text(encoding="utf-8"))
    set_grid(five, {**params["grid"], "fraction": "foldover"})
    listed = run_module(five, "dvc", "stage", "list", "--name-only")
    trains = [n for n in listed.stdout.split() if n.startswith("train")]
    assert len(trains) == 64
    stages = yaml.safe_load((five / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    before = yaml.safe_load(halfway)["stages"]
    kept = {n: s for n, s in before.items() if n.startswith("train")}
    assert len(kept) == 16 and all(stages[n] == s for n, s in kept.items())
    set_grid(five, params["grid"])


@pytest.mark.parametrize(
    "grid, analysis, line",
    [
        ({"fraction": "1/3"}, None, "grid.fraction: '1/3' is not a design; use 1/2, 1/4"),
        (
            {"rope": [False, True], "moe": [False, True], "fgram": [False], "fraction": "1/2"},
            None,
            "grid.fraction: 1/2 of a 2^2 grid leaves 2 cells, too few to keep its 2 main",
        ),
        (
            {"fraction": "1/2", "generators": ["D = ABC"]},
            None,
            "grid.generators: 'D = ABC' names factor D",
        ),
        (
            {"fraction": "1/2", "generators": ["C = A"]},
            None,
            "grid.generators: ['C = A'] alias the main effects of rope and fgram",
        ),
        ({}, {"equivalence_margin": -1}, "analysis.equivalence_margin: must be a positive number"),
    ],
)
def test_a_bad_design_or_margin_is_refused_in_one_line_and_dvc_yaml_is_left_alone(
    tmp_path, grid, analysis, line
):
    """Kills: a fraction of 1/3 or of a 2^2 grid written as stages, a generator naming a
    factor the grid does not vary, resolution II accepted, a negative margin accepted."""
    root = make_project(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["grid"] = {**params["grid"], **grid}
    if analysis:
        params["analysis"] = analysis
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (root / "dvc.yaml").read_bytes()
    out = run_module(root, "pipeline.grid")
    assert out.returncode == 2
    (err,) = out.stderr.strip().splitlines()
    assert err.startswith(f"error: params.yaml: {line}"), err
    assert (root / "dvc.yaml").read_bytes() == before


@pytest.mark.parametrize(
    "fraction, generators, line",
    [
        (
            "1/4",
            ["E = ABC", "E = ABC"],
            "grid.generators: ['E = ABC', 'E = ABC'] are not independent",
        ),
        (None, ["E = ABCD"], "grid.generators: set without grid.fraction"),
        ("1/4", ["E = ABCD"], "grid.generators: 1/4 needs a list of 2 generator(s)"),
        ("1/2", ["E = ABCE"], "grid.generators: 'E = ABCE' repeats a letter"),
        ("1/2", ["E ABCD"], "grid.generators: 'E ABCD' is not a generator"),
    ],
)
def test_generators_that_make_no_design_are_refused_naming_the_key(fraction, generators, line):
    """Kills: two equal generators taken for a quarter (their product is the identity: the
    'fraction' is a half), generators silently ignored without grid.fraction, or a
    generator's own letter on its right side (E = ABCE, i.e. I = ABC)."""
    with pytest.raises(ValueError) as err:
        design(list("abcde"), fraction, generators)
    assert str(err.value).startswith(line), err.value
