"""The statistics behind the report: factorial effects, Lenth's method for one seed, the
replicated factorial with seeds as blocks, Hsu's MCB (Dunnett's constant) for best, Cochran's
C, and the rule that tied variants are never called best."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from nanomoe.switches import model_grid
from pipeline.report.analysis import analyse
from pipeline.report.ranking import dunnett_one_sided, rank
from pipeline.report.stats import cochran, factorial_effects, lenth, pooled, t_interval

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


# Montgomery, Design and Analysis of Experiments (8th ed., 2013): the chemical process of
# Example 6.1 (Sec. 6.2, Table 6.1: yield against reactant concentration A and catalyst B, a
# 2^2 design with three replicates), run as three blocks in Sec. 7.2 (Table 7.2's ANOVA).
CHEMICAL = {"": [28, 25, 27], "a": [36, 32, 32], "b": [18, 19, 23], "ab": [31, 30, 29]}


def chemical_runs() -> pd.DataFrame:
    """One row per treatment combination, one column per replicate (block)."""
    return pd.DataFrame(CHEMICAL, index=["I", "II", "III"]).T


def test_replicated_factorial_in_blocks_reproduces_montgomerys_chemical_process():
    """Kills: the pooled df replaced by n - 1 (2 here, for 6), the blocks left in the error
    (SS_E 31.33 on 8 df), and an effect SE of sigma / sqrt(N) for 2 sigma / sqrt(N)."""
    y = chemical_runs()
    long = pd.DataFrame(
        [{"a": "a" in c, "b": "b" in c, "y": v} for c, vs in CHEMICAL.items() for v in vs]
    )
    effects = factorial_effects(long, ["a", "b"], "y")
    assert effects == pytest.approx({"a (main)": 25 / 3, "b (main)": -5.0, "a x b": 5 / 3})
    n_runs = 12  # SS of an effect = N effect^2 / 4: 208.33, 75.00, 8.33 (Table 7.2)
    ss = {k: n_runs * e**2 / 4 for k, e in effects.items()}
    assert list(ss.values()) == pytest.approx([208.33, 75.00, 8.33], abs=0.005)
    p = pooled(y)
    assert p.df == 6 and p.n_seeds == 3 and p.m == 3
    assert p.sigma**2 * p.df == pytest.approx(24.83, abs=0.005)  # SS_E
    assert p.sigma**2 == pytest.approx(4.14, abs=0.005)  # MS_E
    ss_blocks = 4 * ((y.mean(axis=0) - y.to_numpy().mean()) ** 2).sum()
    ss_total = ((y.to_numpy() - y.to_numpy().mean()) ** 2).sum()
    assert ss_blocks == pytest.approx(6.50) and ss_total == pytest.approx(323.00)
    assert sum(ss.values()) + ss_blocks + p.sigma**2 * p.df == pytest.approx(ss_total)
    # each effect's 95% margin: t(0.975, 6) x 2 sqrt(MS_E / 12) = 2.447 x 1.175 = 2.87
    assert p.me == pytest.approx(2.87, abs=0.005)
    assert p.me == pytest.approx(scipy_stats.t.ppf(0.975, 6) * 2 * math.sqrt(p.sigma**2 / 12))


# Dunnett (1955), JASA 50, Table 1a: one-sided 95% constants for p comparisons with a
# control, rows df = 5 and df = 10, p = 1..9.
DUNNETT_1A = {
    5: [2.02, 2.44, 2.68, 2.85, 2.98, 3.08, 3.16, 3.24, 3.30],
    10: [1.81, 2.15, 2.34, 2.47, 2.56, 2.64, 2.70, 2.76, 2.81],
}


@pytest.mark.parametrize("df", sorted(DUNNETT_1A))
def test_dunnett_one_sided_constants_match_dunnetts_table(df):
    """Kills: a two-sided constant, a correlation other than 1/2 (sqrt(2) dropped), and the
    chi scale of sigma_hat left out (the normal's constants: 1.64, 1.92, ...)."""
    got = [dunnett_one_sided(p, df) for p in range(1, 10)]
    assert got == pytest.approx(DUNNETT_1A[df], abs=0.006)
    assert got[0] == pytest.approx(scipy_stats.t.ppf(0.95, df), abs=1e-6)  # p = 1: a t


def test_dunnett_constant_is_a_one_sided_t_for_one_comparison_even_on_one_df():
    """The heavy tail of one df (t(0.95, 1) = 6.31) is where a coarse quadrature fails."""
    assert dunnett_one_sided(1, 1) == pytest.approx(6.3138, abs=1e-3)


# Cochran's C, 5% critical values for k variances on nu df each (Eisenhart, Hastay and
# Wallis 1947, Techniques of Statistical Analysis, Table 15.1): k = 8, nu = 1 and nu = 2.
@pytest.mark.parametrize("n_seeds, critical", [(2, 0.6798), (3, 0.5157)])
def test_cochrans_c_flags_one_noisy_cell_against_the_tables_critical_value(n_seeds, critical):
    """Kills: C taken as the largest variance over the mean (not the sum), and a critical
    value with the Bonferroni split alpha/k left out."""
    rng = np.random.default_rng(1)
    quiet = pd.DataFrame(rng.normal(0, 0.01, (8, n_seeds)), index=list("abcdefgh"))
    c = cochran(quiet)
    assert c.critical == pytest.approx(critical, abs=0.0005)
    assert 1 / 8 <= c.c < c.critical and not c.unequal
    noisy = quiet.copy()
    noisy.loc["d"] = [0.0, 0.5, -0.5][:n_seeds]
    assert cochran(noisy).unequal and cochran(noisy).noisiest == "d"


def test_tied_variants_are_never_called_best():
    """Kills: ``gap >= margin`` for ``gap > margin`` (B sits exactly on the margin), and a best
    called from the lowest alone."""
    r = rank(losses({"A": [1.0, 1.0], "B": [1.125, 1.375], "C": [2.0, 2.0]}), margin=0.25)
    assert r.best is None and r.tied == ["A", "B"]
    one_seed = rank(losses({"A": [1.00], "B": [1.01], "C": [1.2]}), margin=0.02)
    assert one_seed.best is None and one_seed.tied == ["A", "B"]
    clear = rank(losses({"A": [1.00], "B": [1.03], "C": [1.2]}), margin=0.02)
    assert clear.best == "A" and clear.tied == ["A"]
    assert rank(losses({"A": [1.0], "B": [1.5]}), margin=math.nan).best is None


def grid(loss_of, seeds=(1,)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for rope, moe, fgram in itertools.product((False, True), repeat=3):
            loss = loss_of(rope, moe, fgram, seed)
            cell = {"rope": rope, "moe": moe, "fgram": fgram, "tokenizer": "char", "seed": seed}
            rows.append({"variant": f"{rope:d}{moe:d}{fgram:d}", **cell, "final_val_bpb": loss})
    return pd.DataFrame(rows)


FULL_GRID = model_grid()  # every model switch at both levels, the tokenizer at char: 2^3
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


def test_seeds_are_judged_by_the_pooled_noise_and_hsus_margin_for_best():
    """Kills: per-effect t-intervals over seeds in place of the pooled margin, and a best
    judged by the per-comparison t (2.36 on 7 df) instead of Dunnett's d (2.89)."""
    rng = np.random.default_rng(0)
    df = grid(lambda r, m, f, s: 2.0 - 0.1 * r + rng.normal(0, 0.01), seeds=(1, 2))
    a = analyse(df, FULL_GRID)
    y = df.pivot(index="variant", columns="seed", values="final_val_bpb")
    p = pooled(y)
    assert a.kind == "replicated factorial" and a.noise == p and p.df == 7
    assert (a.effects.margin == p.me).all() and p.me == pytest.approx(
        scipy_stats.t.ppf(0.975, 7) * 2 * p.sigma / 4
    )
    margin = dunnett_one_sided(7, 7) * p.sigma  # sigma sqrt(2/2)
    assert a.best_margin == pytest.approx(margin)
    assert all(m == pytest.approx(margin) for _, m in a.ranking.gaps.values())
    assert "Hsu's multiple comparisons with the best" in a.method


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
    assert rank(losses({"A": [1.0]}), margin=0.1).best is None
    assert rank(losses({"A": [1.0, 1.1]}), margin=0.1).best is None
