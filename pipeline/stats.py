"""Statistics of a two-level factorial ablation: effects, their noise, and who is best.

- **Effects.** Each switch is coded -1 (off) / +1 (on); the effect of a contrast (a main
  effect, or the product of several switches' codes for an interaction) is the mean response
  where the contrast is +1 minus the mean where it is -1. A 2^3 design has 7 contrasts.
- **One replicate (one seed): Lenth's method.** Lenth, R. V. (1989), "Quick and easy
  analysis of unreplicated factorials", Technometrics 31(4), 469-473. With the m effects c_i:
  s0 = 1.5 x median|c_i|; the pseudo standard error PSE = 1.5 x median{|c_i| : |c_i| < 2.5 s0};
  the margin of error ME = t(0.975, m/3) x PSE, and the simultaneous margin
  SME = t(gamma, m/3) x PSE with gamma = (1 + 0.95^(1/m)) / 2. For m = 7, ME = 3.76 PSE
  and SME = 9.01 PSE (Lenth's Table 1). An effect is distinguishable from noise when
  |c_i| > ME.
- **Seeds: t-intervals.** Each effect is computed per seed; its 95% interval is the mean
  +- t(0.975, n-1) x sd / sqrt(n). Variants are compared paired by seed.
- **Best.** A variant is called best only when it is separated from the runner-up: with
  seeds, the runner-up's paired difference has an interval above zero; with one seed, the
  difference of two runs exceeds t(0.975, m/3) x sqrt(2) x sigma, where a single run's
  noise sigma = sqrt(2) x PSE (an effect is a difference of two means of half the runs each,
  so its standard error is sigma / sqrt(2) for a 2^3 design). Otherwise the variants within
  the margin of the lowest are tied.

Quantiles come from scipy (pinned in requirements.txt).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile; ``df`` may be fractional (Lenth's m/3)."""
    return float(stats.t.ppf(p, df))


def contrast_names(factors: Sequence[str]) -> list[tuple[str, ...]]:
    """Every contrast of a 2^k design: main effects, then two-way, ..., then k-way."""
    return [c for r in range(1, len(factors) + 1) for c in itertools.combinations(factors, r)]


def label(contrast: tuple[str, ...]) -> str:
    return f"{contrast[0]} (main)" if len(contrast) == 1 else " x ".join(contrast)


def factorial_effects(df: pd.DataFrame, factors: Sequence[str], response: str) -> dict[str, float]:
    """Every contrast's effect in ``df``: one replicate of a full 2^k design, with boolean
    factor columns (on = +1)."""
    coded = {f: df[f].astype(int).to_numpy() * 2 - 1 for f in factors}
    y = df[response].to_numpy(dtype=float)
    out = {}
    for contrast in contrast_names(factors):
        sign = np.prod([coded[f] for f in contrast], axis=0)
        out[label(contrast)] = float(y[sign > 0].mean() - y[sign < 0].mean())
    return out


@dataclass(frozen=True)
class Lenth:
    pse: float  # pseudo standard error of one effect
    me: float  # 95% margin of error of one effect
    sme: float  # 95% simultaneous margin over all m effects
    m: int  # the number of effects: a full 2^k design of m + 1 runs

    @property
    def df(self) -> float:
        return self.m / 3

    def run_noise(self) -> float:
        """A single run's sigma, from the PSE: an effect's standard error is
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
    gamma = (1 + LEVEL ** (1 / m)) / 2
    return Lenth(pse, t_quantile(0.5 + LEVEL / 2, m / 3) * pse, t_quantile(gamma, m / 3) * pse, m)


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); the half-width is NaN for one value."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    half = t_quantile(0.5 + LEVEL / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


@dataclass(frozen=True)
class Ranking:
    """Variants by mean loss; ``tied``: those not separated from the lowest (it included).
    ``margins``: for each other variant, its gap to the lowest and that gap's margin."""

    order: list[str]
    tied: list[str]
    gaps: dict[str, tuple[float, float]]  # variant -> (mean gap to the lowest, 95% margin)

    @property
    def best(self) -> str | None:
        """The lowest variant when it is separated from every other, else None."""
        return self.order[0] if len(self.tied) == 1 else None


def rank(losses: pd.DataFrame, margin_one_seed: float | None = None) -> Ranking:
    """``losses``: one row per variant, one column per seed. With >= 2 seeds each gap to the
    lowest variant is a paired t-interval by seed; with one seed the gap is judged against
    ``margin_one_seed`` (Lenth's difference margin)."""
    order = losses.mean(axis=1).sort_values(kind="stable").index.tolist()
    lowest = losses.loc[order[0]]
    tied, gaps = [order[0]], {}
    for variant in order[1:]:
        diff = losses.loc[variant] - lowest
        if losses.shape[1] >= 2:
            gap, half = t_interval(diff.to_list())
        else:
            gap, half = float(diff.iloc[0]), float(margin_one_seed)
        gaps[variant] = (gap, half)
        if not gap - half > 0:  # NaN margins never separate
            tied.append(variant)
    return Ranking(order, tied, gaps)
