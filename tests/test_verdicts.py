"""Three-way verdicts (real, negligible, undetermined) and equivalence to the best.

The worked example is the committed default run (experiments/ablation.csv: 8 cells x 2
seeds), by hand: sigma from its pooled cell x seed noise on 7 df, SE = 2 sigma / sqrt(16),
the 95% margin t(0.975, 7) SE and TOST's 90% interval t(0.95, 7) SE, from scipy."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from _project import REPO
from scipy import stats

from nanomoe.switches import grid_variant
from pipeline.report.analysis import analyse
from pipeline.report.verdicts import effect_verdict, equivalent_to_best, mcb_upper

GRID = {"rope": [False, True], "moe": [False, True], "fgram": [False, True], "tokenizer": ["char"]}


def committed_run() -> pd.DataFrame:
    df = pd.read_csv(REPO / "experiments" / "ablation.csv")
    df["variant"] = [grid_variant(r, GRID) for r in df.to_dict("records")]
    return df


def test_the_default_run_has_four_real_effects_and_three_undetermined_at_a_margin_of_0_01():
    """By hand: sigma = 0.0135 on 7 df gives SE 0.0068 and a 90% half-width 0.0128 > 0.01, so
    no effect can be negligible; rope x moe, moe x fgram and the three-way stay undetermined.
    Kills: the 90% interval taken at t(0.975) or on the normal quantile, SE without the
    2/sqrt(N), or a non-real effect called negligible when its interval reaches past 0.01."""
    a = analyse(committed_run(), GRID, equivalence_margin=0.01)
    assert a.noise.df == 7 and a.noise.sigma == pytest.approx(0.0135, abs=5e-5)
    se = 2 * a.noise.sigma / math.sqrt(16)
    half = stats.t.ppf(0.95, 7) * se
    assert a.effects.half90.to_list() == pytest.approx([half] * 7, rel=1e-12)
    assert half == pytest.approx(0.0128, abs=5e-5)
    verdicts = dict(zip(a.effects.effect, a.effects.verdict, strict=True))
    assert verdicts == {
        "rope (main)": "real",
        "moe (main)": "real",
        "fgram (main)": "real",
        "rope x moe": "undetermined",
        "rope x fgram": "real",
        "moe x fgram": "undetermined",
        "rope x moe x fgram": "undetermined",
    }
    # the real ones are beyond t(0.975, 7) x SE, as ``distinguishable`` always was
    assert (a.effects.verdict == "real").to_list() == a.effects.distinguishable.to_list()


def test_a_wide_margin_calls_the_small_effects_of_the_default_run_negligible():
    """At 0.05 bpb, the three small effects' 90% intervals (|d| + 0.0128 < 0.05) lie inside:
    negligible; the real ones stay real, those inside the margin flagged ``below_margin``.
    Kills: the margin argument ignored (params.yaml's 0.01 used), or real overridden."""
    a = analyse(committed_run(), GRID, equivalence_margin=0.05)
    e = a.effects.set_index("effect")
    for name in ("rope x moe", "moe x fgram", "rope x moe x fgram"):
        assert e.verdict[name] == "negligible"
        assert abs(e.delta[name]) + e.half90[name] < 0.05
    assert e.verdict["rope (main)"] == "real"
    assert bool(e.below_margin["fgram (main)"]) == (
        abs(e.delta["fgram (main)"]) + e.half90["fgram (main)"] < 0.05
    )


def test_an_interval_exactly_touching_the_margin_is_undetermined():
    """0.25 + 0.5 = 0.75 exactly in binary: the 90% interval's edge on +Δ is not strictly
    inside. Kills: ``<=`` in place of ``<``."""
    assert effect_verdict(0.25, 1.0, 0.5, 0.75) == "undetermined"
    assert effect_verdict(-0.25, 1.0, 0.5, 0.75) == "undetermined"
    assert effect_verdict(0.25, 1.0, 0.5, 0.875) == "negligible"
    assert effect_verdict(1.5, 1.0, 0.5, 0.75) == "real"
    assert effect_verdict(0.0, 1.0, 0.5, None) == "undetermined"  # no margin: none negligible


def test_one_seed_calls_nothing_negligible_however_small_its_effects():
    """Lenth's noise is estimated from the effects themselves: with one seed, a tiny effect is
    undetermined, not negligible, at any margin. Kills: TOST run on Lenth's PSE."""
    df = committed_run()
    a = analyse(df[df.seed == 1337], GRID, equivalence_margin=1.0)
    assert a.kind == "lenth"
    assert set(a.effects.verdict) <= {"real", "undetermined"} and "undetermined" in set(
        a.effects.verdict
    )
    assert a.equivalent == []


def test_a_null_margin_calls_nothing_negligible():
    """Kills: a null analysis.equivalence_margin read as zero width, or as no check at all."""
    a = analyse(committed_run(), GRID, equivalence_margin=None)
    assert "negligible" not in set(a.effects.verdict) and a.equivalent == []


def test_mcb_upper_bounds_and_equivalence_to_the_best_by_hand():
    """Means 1.0, 1.004, 1.02 and MCB margin 0.005: upper bounds max(0, 1.0 - 1.004 + 0.005)
    = 0.001, 1.004 - 1.0 + 0.005 = 0.009, 0.025. Within 0.01 of the best: the first two;
    at a margin of exactly 0.009 the second touches it and drops out. Kills: the bound taken
    against the lowest variant including itself (0.005 for the lowest), or ``<=``."""
    losses = pd.DataFrame({1: [1.0, 1.004, 1.02], 2: [1.0, 1.004, 1.02]}, index=["a", "b", "c"])
    upper = mcb_upper(losses, 0.005)
    assert upper == pytest.approx({"a": 0.001, "b": 0.009, "c": 0.025}, abs=1e-12)
    assert equivalent_to_best(losses, 0.005, 0.01) == ["a", "b"]
    assert equivalent_to_best(losses, 0.005, upper["b"]) == ["a"]
    assert equivalent_to_best(losses, math.nan, 0.01) == []  # no margin: no verdict
