"""The statistics behind the report: factorial effects, Lenth's method for one seed,
t-intervals over seeds, and the rule that tied variants are never called best."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from nanomoe.switches import SWITCHES
from pipeline.stats import analyse, factorial_effects, lenth, rank, t_interval

# Montgomery, Design and Analysis of Experiments (8th ed.), Example 6.2: the filtration rate
# of a chemical product, a single replicate of a 2^4 design (factors A-D). Table 6.10's
# responses by treatment combination, and Table 6.11's effect estimates.
FILTRATION = {
    "": 45, "a": 71, "b": 48, "ab": 65, "c": 68, "ac": 60, "bc": 80, "abc": 65,
    "d": 43, "ad": 100, "bd": 45, "abd": 104, "cd": 75, "acd": 86, "bcd": 70, "abcd": 96,
}  # fmt: skip
FILTRATION_EFFECTS = {
    "a (main)": 21.625, "b (main)": 3.125, "c (main)": 9.875, "d (main)": 14.625,
    "a x b": 0.125, "a x c": -18.125, "a x d": 16.625, "b x c": 2.375, "b x d": -0.375,
    "c x d": -1.125, "a x b x c": 1.875, "a x b x d": 4.125, "a x c x d": -1.625,
    "b x c x d": -2.625, "a x b x c x d": 1.375,
}  # fmt: skip


def filtration_runs() -> pd.DataFrame:
    rows = [{**{f: f in combo for f in "abcd"}, "y": y} for combo, y in FILTRATION.items()]
    return pd.DataFrame(rows)


def test_factorial_effects_reproduce_montgomerys_filtration_table():
    effects = factorial_effects(filtration_runs(), list("abcd"), "y")
    assert effects == pytest.approx(FILTRATION_EFFECTS)


def test_lenth_pse_and_margins_match_the_filtration_example():
    # Lenth's method on those 15 effects, as Montgomery works it (Sec. 6.5): the median
    # |effect| is 2.625, so s0 = 3.9375; the ten |effects| below 2.5 s0 = 9.84 have median
    # 1.75, so PSE = 1.5 x 1.75 = 2.625; ME = t(0.975, 5) x PSE = 2.571 x 2.625 = 6.75;
    # SME = t(gamma, 5) x PSE with gamma = (1 + 0.95^(1/15)) / 2: 5.219 x 2.625 = 13.70.
    lt = lenth(list(FILTRATION_EFFECTS.values()))
    assert lt.pse == pytest.approx(2.625)
    assert lt.me == pytest.approx(6.75, abs=0.005)
    assert lt.sme == pytest.approx(13.70, abs=0.005)
    active = {k for k, v in FILTRATION_EFFECTS.items() if abs(v) > lt.me}
    assert active == {"a (main)", "c (main)", "d (main)", "a x c", "a x d"}


@pytest.mark.parametrize("m, me, sme", [(7, 3.76, 9.01), (15, 2.57, 5.22), (31, 2.22, 4.22)])
def test_lenth_margins_per_pse_match_lenths_table(m, me, sme):
    # Lenth (1989), Technometrics 31(4), Table 1: ME/PSE and SME/PSE for m contrasts.
    effects = [1.0] * m  # every |effect| equal: PSE = 1.5, margins scale with it
    lt = lenth(effects)
    assert lt.pse == 1.5
    assert lt.me / lt.pse == pytest.approx(me, abs=0.005)
    assert lt.sme / lt.pse == pytest.approx(sme, abs=0.005)


def test_t_interval_by_hand():
    # values 1, 2, 3, 6: mean 3, sd sqrt(14/3); t(0.975, 3) = 3.182446 (tables)
    mean, half = t_interval([1, 2, 3, 6])
    assert mean == 3.0
    assert half == pytest.approx(3.182446 * math.sqrt(14 / 3) / 2, rel=1e-6)
    assert half == pytest.approx(scipy_stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 6], ddof=1) / 2)
    assert math.isnan(t_interval([4.0])[1])


def losses(table: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(table).T  # variants as rows, seeds as columns


def test_paired_comparison_separates_a_consistent_small_gap():
    # A beats B by exactly 0.01 on every seed, though seed noise (0.05) dwarfs the gap:
    # paired by seed the gap is certain; unpaired it would not be.
    r = rank(losses({"A": [1.00, 1.05, 0.95], "B": [1.01, 1.06, 0.96]}))
    assert r.best == "A" and r.tied == ["A"]
    gap, margin = r.gaps["B"]
    assert gap == pytest.approx(0.01) and margin == pytest.approx(0.0, abs=1e-12)


def test_tied_variants_are_never_called_best():
    r = rank(losses({"A": [1.00, 1.05, 0.95], "B": [1.02, 1.03, 0.97], "C": [1.5, 1.5, 1.5]}))
    assert r.best is None and r.tied == ["A", "B"]
    one_seed = rank(losses({"A": [1.00], "B": [1.01], "C": [1.2]}), margin_one_seed=0.02)
    assert one_seed.best is None and one_seed.tied == ["A", "B"]
    clear = rank(losses({"A": [1.00], "B": [1.03], "C": [1.2]}), margin_one_seed=0.02)
    assert clear.best == "A" and clear.tied == ["A"]


def grid(loss_of, seeds=(1,)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for rope, moe, fgram in itertools.product((False, True), repeat=3):
            loss = loss_of(rope, moe, fgram, seed)
            cell = {"rope": rope, "moe": moe, "fgram": fgram, "seed": seed}
            rows.append({"variant": f"{rope:d}{moe:d}{fgram:d}", **cell, "final_val_loss": loss})
    return pd.DataFrame(rows)


FULL_GRID = {s.name: list(s.levels) for s in SWITCHES}  # every switch at both levels: 2^3
NOISE = [0.003, -0.002, 0.001, -0.004, 0.002, 0.0, -0.001, 0.004]  # one per cell


def test_one_seed_report_judges_by_lenth_and_calls_a_close_pair_tied():
    df = grid(lambda r, m, f, s: 2.0 - 0.17 * r - 0.03 * m + NOISE[4 * r + 2 * m + f])
    a = analyse(df, FULL_GRID)
    assert a.lenth is not None and len(a.effects) == 7
    judged = a.effects.set_index("effect").distinguishable.to_dict()
    assert judged["rope (main)"] and not judged["rope x moe x fgram"]
    # sigma = sqrt(2) PSE for one run; a difference of two runs has sd 2 PSE
    assert a.lenth.difference_margin() == pytest.approx(2 * a.lenth.me)
    assert a.ranking.order[:2] == ["110", "111"]  # 1.799 and 1.804: 0.005 apart
    gap, margin = a.ranking.gaps["111"]
    assert gap == pytest.approx(0.005) and margin == pytest.approx(2 * a.lenth.me)
    assert margin > gap
    assert a.ranking.best is None and a.ranking.tied == ["110", "111"]


def test_one_seed_report_calls_a_variant_best_when_it_clears_the_margin():
    df = grid(lambda r, m, f, s: 2.0 - 0.17 * r - 0.03 * m + 0.08 * f + NOISE[4 * r + 2 * m + f])
    a = analyse(df, FULL_GRID)
    gap, margin = a.ranking.gaps["100"]  # the runner-up, about 0.03 behind
    assert a.ranking.order[:2] == ["110", "100"] and gap > margin
    assert a.ranking.best == "110" and a.ranking.tied == ["110"]


def test_three_seed_report_uses_t_intervals_over_seeds():
    rng = np.random.default_rng(0)
    df = grid(lambda r, m, f, s: 2.0 - 0.1 * r + rng.normal(0, 0.01), seeds=(1, 2, 3))
    a = analyse(df, FULL_GRID)
    assert a.lenth is None and "t-interval" in a.method
    per_seed = [factorial_effects(df[df.seed == s], ("rope", "moe", "fgram"), "final_val_loss")
                for s in (1, 2, 3)]  # fmt: skip
    rope = a.effects.set_index("effect").loc["rope (main)"]
    expected = t_interval([e["rope (main)"] for e in per_seed])
    assert (rope.delta, rope.margin) == pytest.approx(expected)


def from_effects(effects: dict[str, float]) -> pd.DataFrame:
    """One seed of the 2^3 design whose effects are exactly ``effects`` (the rest zero):
    y = 2 + the sum of each contrast's effect / 2 x its sign in the cell."""

    def loss_of(r, m, f, s):
        code = {"rope": 2 * r - 1, "moe": 2 * m - 1, "fgram": 2 * f - 1}
        return 2.0 + sum(
            e / 2 * math.prod(code[n] for n in c.split(" x ")) for c, e in effects.items()
        )

    return grid(loss_of)


def test_one_seed_calls_an_effect_between_me_and_sme_distinguishable():
    """Kills: the Lenth rule judging effects by the simultaneous margin SME instead of ME.
    Six effects of +-0.01 give PSE = 0.015, ME = 0.056 and SME = 0.135; rope's 0.1 lies
    between them, so it is distinguishable by ME and would not be by SME."""
    small = {"moe": 0.01, "fgram": -0.01, "rope x moe": 0.01, "rope x fgram": -0.01,
             "moe x fgram": 0.01, "rope x moe x fgram": -0.01}  # fmt: skip
    a = analyse(from_effects({"rope": 0.1, **small}), FULL_GRID)
    assert a.lenth.pse == pytest.approx(0.015) and a.lenth.me < 0.1 < a.lenth.sme
    judged = a.effects.set_index("effect").distinguishable
    assert judged[judged].index.to_list() == ["rope (main)"]


def test_one_seed_calls_an_effect_equal_to_me_not_distinguishable():
    """Kills: the Lenth rule using ``>=`` for ``>``. With six effects exactly 0, the median
    |effect| is 0, so PSE = ME = 0: a zero effect equals ME and must stay within noise."""
    a = analyse(from_effects({"rope": 0.125}), FULL_GRID)  # 2.125: exact in binary
    assert a.lenth.me == 0.0 and (a.effects.delta[1:] == 0.0).all()
    judged = a.effects.set_index("effect").distinguishable
    assert judged[judged].index.to_list() == ["rope (main)"]


def test_a_lone_variant_is_not_called_best():
    """Best is a comparison: one variant (a grid that varies no switch) has nothing to beat."""
    assert rank(losses({"A": [1.0]}), margin_one_seed=0.1).best is None
    assert rank(losses({"A": [1.0, 1.1]})).best is None
