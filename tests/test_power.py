"""The power plan: noncentral-t detection power and TOST's exact power, against 20,000
simulated replicated designs run through the report's own noise and effect estimates; the
issue's half-widths by hand; ``python -m pipeline.plan`` in a throwaway project."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _project import make_project, run_module
from scipy import stats

from pipeline.design.power import (
    detection_power,
    effect_se,
    equivalence_power,
    pooled_df,
    seeds_needed,
    seeds_to_settle,
)

SIGMA, CELLS = 0.0135, 8  # the default run's pooled sigma, a 2^3 design
REPLICATES = 20_000


def simulated(effect: float, n_seeds: int, margin: float) -> tuple[float, float]:
    """(share called real, share called negligible) over REPLICATES designs of CELLS cells x
    n seeds: a seed shift per block, N(0, SIGMA) noise, factor A's effect ``effect``; the
    pooled noise from the cell x seed residuals, as pipeline/report/stats.py computes it."""
    rng = np.random.default_rng(20261207)
    sign = np.array([-1, 1] * (CELLS // 2))  # factor A's code in each cell
    y = effect / 2 * sign[None, :, None] + rng.normal(0, 0.05, (REPLICATES, 1, n_seeds))
    y = y + rng.normal(0, SIGMA, (REPLICATES, CELLS, n_seeds))
    cell, seed = y.mean(axis=2, keepdims=True), y.mean(axis=1, keepdims=True)
    resid = y - cell - seed + y.mean(axis=(1, 2), keepdims=True)
    df = (CELLS - 1) * (n_seeds - 1)
    se = 2 * np.sqrt((resid**2).sum(axis=(1, 2)) / df) / np.sqrt(CELLS * n_seeds)
    d = (cell[:, :, 0] * sign).sum(axis=1) / (CELLS / 2)
    real = np.abs(d) > stats.t.ppf(0.975, df) * se
    negligible = np.abs(d) + stats.t.ppf(0.95, df) * se < margin
    return float(real.mean()), float(negligible.mean())


@pytest.mark.parametrize("n_seeds, effect", [(2, 0.02), (4, 0.01), (6, 0.0)])
def test_detection_and_equivalence_power_match_simulated_designs(n_seeds, effect):
    """Within 4 Monte-Carlo SEs. Kills: the normal approximation in place of the noncentral
    t (too high at 7 df), a one-sided detection test, TOST's interval at t(0.975), or the
    sampling of sigma_hat left out of the equivalence power (sigma taken as known)."""
    real, negligible = simulated(effect, n_seeds, margin=0.01)
    p_real = detection_power(effect, SIGMA, CELLS, n_seeds) if effect else 0.05
    p_neg = equivalence_power(0.01, SIGMA, CELLS, n_seeds, effect=effect)
    for got, want in ((real, p_real), (negligible, p_neg)):
        mc = np.sqrt(max(want * (1 - want), 1e-4) / REPLICATES)
        assert abs(got - want) < 4 * mc, (got, want)


def test_detection_power_is_the_noncentral_t_by_hand():
    """n = 4: df 21, lambda = 0.01 / (2 x 0.0135 / sqrt(32)), two tails of nct. Kills: the
    noncentrality taken as effect / sigma, or df as C (n - 1)."""
    se = 2 * SIGMA / np.sqrt(32)
    tc = stats.t.ppf(0.975, 21)
    want = stats.nct.sf(tc, 21, 0.01 / se) + stats.nct.cdf(-tc, 21, 0.01 / se)
    assert detection_power(0.01, SIGMA, CELLS, 4) == pytest.approx(want, rel=1e-9)
    assert detection_power(0.01, SIGMA, CELLS, 4) < stats.norm.sf(tc - 0.01 / se) + 0.01


def test_the_issues_half_widths_with_four_and_six_seeds():
    """The issue's arithmetic: 4 seeds, df 21, 1.721 x 0.0048 = 0.0082; 6 seeds, df 35,
    0.0066; 2 seeds, df 7, 0.0128 > 0.01. Kills: a wrong df or SE for a planned design."""
    for n, df, half in ((2, 7, 0.0128), (4, 21, 0.0082), (6, 35, 0.0066)):
        assert pooled_df(CELLS, n) == df
        assert stats.t.ppf(0.95, df) * effect_se(SIGMA, CELLS, n) == pytest.approx(half, abs=5e-5)


def test_seeds_needed_is_the_first_that_reaches_the_target():
    """Kills: an off-by-one (the last n below the target), or a search that starts at 1."""
    powers = {2: 0.5, 3: 0.79, 4: 0.8, 5: 0.9}
    assert seeds_needed(powers.__getitem__, 0.8, 5) == 4
    assert seeds_needed(powers.__getitem__, 0.95, 5) is None
    detect, equiv = seeds_to_settle(0.01, 0.01, SIGMA, CELLS)
    assert (
        detection_power(0.01, SIGMA, CELLS, detect)
        >= 0.8
        > detection_power(0.01, SIGMA, CELLS, detect - 1)
    )
    assert (
        equivalence_power(0.01, SIGMA, CELLS, equiv)
        >= 0.8
        > equivalence_power(0.01, SIGMA, CELLS, equiv - 1)
    )


def test_pipeline_plan_prints_the_grid_and_its_half_from_the_last_report(tmp_path):
    """From summary.json's sigma and ablation.csv's wall_s: the full 2^3 and its 2^(3-1)
    half, each with the seeds for both questions and their cell-hours. Kills: the plan
    ignoring the report's sigma, a fraction's cells counted as the grid's, or hours from
    another figure than wall_s."""
    root = make_project(tmp_path, overrides={"seeds": [1, 2]})
    out = root / "experiments"
    out.mkdir()
    summary = {"sigma": SIGMA, "df": 7, "n_seeds": 2, "method": "replicated factorial"}
    (out / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"wall_s": [300.0, 100.0], "steps": [2000, 2000]}).to_csv(
        out / "ablation.csv", index=False
    )
    got = run_module(root, "pipeline.plan", "--effect", "0.01")
    assert got.returncode == 0, got.stderr
    for cells, name in ((8, "full 2^3"), (4, "2^(3-1) III: C = AB")):
        detect, equiv = seeds_to_settle(0.01, 0.01, SIGMA, cells)
        both = max(detect, equiv)
        row = f"| {name} | {cells} | {detect} | {equiv} | {both} | {cells * both:,} "
        hours = f"{cells * both * 200 / 3600:.1f} | {cells * 200 / 3600:.2f} |"
        assert row + f"| {cells * both * 2000:,} | {hours}" in got.stdout
    assert "sigma = 0.0135" in got.stdout


def test_pipeline_plan_without_a_report_says_so_in_one_line(tmp_path):
    """Kills: a traceback (FileNotFoundError) when no report has run yet."""
    root = make_project(tmp_path)
    got = run_module(root, "pipeline.plan", "--effect", "0.01")
    assert got.returncode == 2
    assert got.stderr.strip().splitlines() == [
        "error: experiments/summary.json: not found; run the report first (dvc repro) or "
        "pass --sigma"
    ]


@pytest.mark.parametrize("flags", [["--margin", "0"], ["--effect", "0"], ["--sigma", "0"]])
def test_pipeline_plan_refuses_a_zero_effect_margin_or_sigma(tmp_path, flags):
    """Kills: a zero flag read as "not given" (``a.margin or ...``), which would plan with
    params.yaml's margin instead of saying the flag is wrong."""
    root = make_project(tmp_path)
    got = run_module(root, "pipeline.plan", *flags)
    assert got.returncode == 2
    assert f"error: {flags[0]}: must be a positive number of bits per byte" in got.stderr
