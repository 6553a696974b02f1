"""Statistics of a two-level factorial ablation: effects and their noise.

- **Effects.** Each factor is coded -1 (low) / +1 (high); the effect of a contrast (a main
  effect, or the product of several switches' codes for an interaction) is the mean response
  where the contrast is +1 minus the mean where it is -1, over all N runs. A 2^3 design has
  7 contrasts.
- **Seeds: a replicated factorial run in blocks.** Montgomery, *Design and Analysis of
  Experiments*, 8th ed., ch. 6 and Sec. 7.2: each of the n seeds replicates the whole 2^k
  design, and a seed is a block (modelled as shifting every cell it trains alike: the cells
  of one seed share its batch order). The error is the cell x seed interaction: each run minus
  its cell's mean and its seed's mean plus the grand mean, pooled over all N = 2^k n runs
  into MS_E on (2^k - 1)(n - 1) degrees of freedom, sigma = sqrt(MS_E). Every effect has
  SE = 2 sigma / sqrt(N); its 95% margin is t(0.975, df) x SE.
- **One seed: Lenth's method.** Lenth, R. V. (1989), "Quick and easy analysis of
  unreplicated factorials", Technometrics 31(4), 469-473. With the m effects c_i:
  s0 = 1.5 x median|c_i|; the pseudo standard error PSE = 1.5 x median{|c_i| : |c_i| < 2.5 s0};
  the margin of error ME = t(0.975, m/3) x PSE. For m = 7, ME = 3.76 PSE (Lenth's Table 1).
  A single run's noise is sigma = PSE x sqrt((m + 1) / 4), since an effect's SE is
  2 sigma / sqrt(m + 1).
- **Simultaneous margins.** Judging all m effects at once, the margin at level
  gamma = (1 + 0.95^(1/m)) / 2 holds for all of them together with 95% confidence (Sidak;
  Lenth's SME is this one for one seed: 9.01 PSE for m = 7).
- **Too little to judge: no verdict.** Lenth's PSE is a median of the smaller effects, and
  his Table 1 starts at m = 7 (a 2^3 design): with one seed and fewer than 3 varying switches
  there is no noise estimate.
- **Unequal noise, as a diagnostic.** The pooled sigma assumes every cell is as noisy as the
  others. Cochran's C (the largest cell's share of the summed cell variances) tests that;
  Levene's test cannot with two seeds, where each cell's two absolute deviations are equal.

Quantiles come from scipy (pinned in requirements.txt). Who is best: ``pipeline/report/ranking.py``;
the two together: ``pipeline/report/analysis.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.design.fraction import contrast_names

LEVEL = 0.95
# Lenth's PSE is a median of the smaller effects; his Table 1 starts at m = 7 (a 2^3 design).
# With fewer effects that median rests on one or two numbers: no estimate of the noise.
LENTH_MIN_EFFECTS = 7


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile; ``df`` may be fractional (Lenth's m/3)."""
    return float(stats.t.ppf(p, df))


def label(contrast: tuple[str, ...]) -> str:
    return f"{contrast[0]} (main)" if len(contrast) == 1 else " x ".join(contrast)


def factorial_effects(
    df: pd.DataFrame,
    factors: Sequence[str],
    response: str,
    contrasts: Sequence[tuple[str, ...]] | None = None,
) -> dict[str, float]:
    """Each contrast's effect in ``df`` (default: every contrast of the full 2^k design):
    one replicate of the design, with boolean factor columns (on = +1). Over a fraction's
    cells, a contrast's effect is its alias chain's (``pipeline/design/fraction.py``)."""
    coded = {f: df[f].astype(int).to_numpy() * 2 - 1 for f in factors}
    y = df[response].to_numpy(dtype=float)
    out = {}
    for contrast in contrasts if contrasts is not None else contrast_names(factors):
        sign = np.prod([coded[f] for f in contrast], axis=0)
        out[label(contrast)] = float(y[sign > 0].mean() - y[sign < 0].mean())
    return out


def simultaneous_level(m: int) -> float:
    """The one-sided quantile level that gives each of m margins so that all m hold
    together with 95% confidence (Sidak): gamma = (1 + 0.95^(1/m)) / 2."""
    return (1 + LEVEL ** (1 / m)) / 2


@dataclass(frozen=True)
class Lenth:
    pse: float  # pseudo standard error of one effect
    me: float  # 95% margin of error of one effect
    sme: float  # 95% simultaneous margin over all m effects
    m: int  # the number of effects: a full 2^k design of m + 1 runs

    @property
    def df(self) -> float:
        return self.m / 3

    @property
    def sigma(self) -> float:
        """A single run's noise, from the PSE: an effect's standard error is
        sigma * sqrt(4 / n_runs), with n_runs = m + 1."""
        return self.pse * math.sqrt((self.m + 1) / 4)

    def difference_margin(self) -> float:
        """95% margin for the difference of two single runs: t x sqrt(2) x sigma, where
        t x PSE is ME; for a 2^3 design that is 2 x ME."""
        return self.me * math.sqrt(2) * math.sqrt((self.m + 1) / 4)


def lenth(effects: Sequence[float]) -> Lenth:
    """Lenth's PSE and margins for the effects of one unreplicated two-level factorial."""
    c = np.abs(np.asarray(effects, dtype=float))
    m = len(c)
    s0 = 1.5 * float(np.median(c))
    pse = 1.5 * float(np.median(c[c < 2.5 * s0])) if (c < 2.5 * s0).any() else s0
    me = t_quantile(0.5 + LEVEL / 2, m / 3) * pse
    return Lenth(pse, me, t_quantile(simultaneous_level(m), m / 3) * pse, m)


@dataclass(frozen=True)
class Pooled:
    """The noise of a 2^k design replicated over n seeds run as blocks."""

    sigma: float  # a single run's noise: sqrt(MS_E)
    df: int  # (2^k - 1)(n - 1): the cell x seed interaction's
    n_seeds: int
    m: int  # the number of effects, 2^k - 1

    @property
    def se(self) -> float:
        """One effect's standard error, 2 sigma / sqrt(N) with N = 2^k n runs."""
        return 2 * self.sigma / math.sqrt((self.m + 1) * self.n_seeds)

    @property
    def me(self) -> float:
        return t_quantile(0.5 + LEVEL / 2, self.df) * self.se

    @property
    def sme(self) -> float:
        return t_quantile(simultaneous_level(self.m), self.df) * self.se


def block_residuals(y: pd.DataFrame) -> pd.DataFrame:
    """``y``: one row per cell, one column per seed (block). The cell x seed interaction:
    each run minus its cell's mean and its seed's mean, plus the grand mean."""
    v = y.to_numpy(dtype=float)
    r = v - v.mean(axis=1, keepdims=True) - v.mean(axis=0, keepdims=True) + v.mean()
    return pd.DataFrame(r, index=y.index, columns=y.columns)


def pooled(y: pd.DataFrame) -> Pooled:
    """The pooled noise of ``y`` (one row per cell of a full 2^k design, one column per
    seed, n >= 2): MS_E = SS(cell x seed) / ((2^k - 1)(n - 1))."""
    cells, n = y.shape
    df = (cells - 1) * (n - 1)
    ms_e = float((block_residuals(y).to_numpy() ** 2).sum()) / df
    return Pooled(math.sqrt(ms_e), df, n, cells - 1)


@dataclass(frozen=True)
class Cochran:
    """Cochran's C for unequal variances: the largest of the cells' variances over seeds (the
    seed blocks removed) as a share of their sum, against its 5% critical value. Removing the
    blocks makes the variances slightly dependent (each seed's residuals sum to zero), which
    the table does not assume: the critical value is approximate, and C cannot exceed
    (p - 1) / p, so with few cells it cannot flag at all (``can_flag``)."""

    spread: dict[str, float]  # cell -> its sd over seeds around the blocks, the seeds' shifts out
    c: float
    critical: float

    @property
    def noisiest(self) -> str:
        return max(self.spread, key=self.spread.__getitem__)

    @property
    def unequal(self) -> bool:
        return self.c > self.critical

    @property
    def can_flag(self) -> bool:
        """Whether C's ceiling (p - 1) / p lies above the critical value: false for 2 cells,
        and for 4 cells with 2 or 3 seeds."""
        p = len(self.spread)
        return (p - 1) / p > self.critical


def cochran(y: pd.DataFrame) -> Cochran:
    """Cochran's C over the cells of ``y`` (cells x seeds, n >= 2), each cell's variance
    taken from its block residuals on n - 1 df. The critical value is Cochran's, from the F
    distribution: 1 / (1 + (p - 1) / F(1 - 0.05/p; n - 1, (p - 1)(n - 1))) for p cells."""
    p, n = y.shape
    var = (block_residuals(y) ** 2).sum(axis=1) / (n - 1)
    f = float(stats.f.ppf(1 - (1 - LEVEL) / p, n - 1, (p - 1) * (n - 1)))
    spread = {str(k): math.sqrt(v) for k, v in var.items()}
    c = float(var.max() / var.sum()) if var.sum() > 0 else 0.0  # no spread at all: none unequal
    return Cochran(spread, c, 1 / (1 + (p - 1) / f))


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); the half-width is NaN for one value."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    half = t_quantile(0.5 + LEVEL / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)
