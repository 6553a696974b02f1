"""Statistics of a two-level factorial ablation: effects, their noise, and who is best.

- **Effects.** Each factor is coded -1 (low) / +1 (high); the effect of a contrast (a main
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
- **Too little to judge: no verdict.** Lenth's PSE is a median of the smaller effects, and
  his Table 1 starts at m = 7 (a 2^3 design): with one seed and fewer than 3 varying switches
  there is no noise estimate, so no effect gets a margin and no variant is called best.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from nanomoe.switches import varying

LEVEL = 0.95
# Lenth's PSE is a median of the smaller effects; his Table 1 starts at m = 7 (a 2^3 design).
# With fewer effects that median rests on one or two numbers: no estimate of the noise.
LENTH_MIN_EFFECTS = 7


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
        """The lowest variant when it is separated from every other, else None (also when it
        is the only one: best is a comparison)."""
        return self.order[0] if len(self.tied) == 1 < len(self.order) else None


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


@dataclass
class Analysis:
    """The ablation judged on final_val_loss: its effects with their margins, the ranking
    of its variants, and the method in words for the report."""

    n_seeds: int
    factors: list[str]  # the switches the grid gives both levels: the design's factors
    effects: pd.DataFrame  # effect, delta, margin (NaN: no verdict), distinguishable
    ranking: Ranking
    lenth: Lenth | None  # one seed with enough effects only

    @property
    def judged(self) -> bool:
        """Whether there is a noise estimate to judge by: at least one factor, and two or
        more seeds or enough effects for Lenth's method."""
        return bool(self.factors) and (self.n_seeds >= 2 or self.lenth is not None)

    @property
    def kind(self) -> str:
        """The method in one word or three, as summary.json and MLflow record it."""
        if not self.judged:
            return "none"
        return "lenth" if self.lenth else "t-interval over seeds"

    @property
    def why_no_verdict(self) -> str:
        if not self.factors:
            return "the grid gives no switch both levels: one variant, no effect to judge"
        return (
            f"one seed and {len(self.factors)} varying switch(es) give {len(self.effects)} "
            f"effect(s); Lenth's method needs at least {LENTH_MIN_EFFECTS} (3 varying "
            "switches) to estimate the noise from the effects themselves"
        )

    @property
    def method(self) -> str:
        if not self.factors:
            return f"no verdict: {self.why_no_verdict}; give a switch both levels under grid:"
        if not self.judged:
            return (
                f"no verdict: {self.why_no_verdict}, so the effects carry no margin, none is "
                "called distinguishable and no variant is called best; list two or more "
                "seeds under seeds: in params.yaml to judge them by t-intervals over seeds"
            )
        if self.lenth is None:
            return (
                f"{self.n_seeds} seeds: each effect is computed per seed, ± is its 95% "
                f"t-interval over seeds (t with {self.n_seeds - 1} df); variants are compared "
                "paired by seed, a gap is real when its 95% paired interval excludes zero"
            )
        lt = self.lenth
        return (
            f"one seed: Lenth's method for unreplicated factorials (Lenth 1989). Pseudo "
            f"standard error PSE = {lt.pse:.4f} from the {len(self.effects)} effects; 95% "
            f"margin ME = t(0.975, m/3 = {lt.df:.2f}) x PSE = {lt.me:.4f} (simultaneous over "
            f"all effects: SME = {lt.sme:.4f}); a single run's noise is estimated as "
            f"sqrt(2) x PSE = {lt.run_noise():.4f}, so two runs differ beyond noise by more "
            f"than {lt.difference_margin():.4f}"
        )


def analyse(df: pd.DataFrame, grid: Mapping[str, Sequence[Any]]) -> Analysis:
    """Effects of the grid's factors (the switches it gives both levels, each coded +1 at
    its high level) with their margins, and the ranking of the variants, on final_val_loss:
    ``df`` has one row per cell and seed (variant, the switches, seed, final_val_loss)."""
    factors = [s.name for s in varying(grid)]
    coded = df.assign(**{s.name: df[s.name] == s.high for s in varying(grid)})
    seeds = sorted(df.seed.unique())
    per_seed = pd.DataFrame(
        [factorial_effects(coded[coded.seed == s], factors, "final_val_loss") for s in seeds]
    )
    losses = df.pivot(index="variant", columns="seed", values="final_val_loss")
    lt = None
    if len(seeds) >= 2:
        rows = [(name, *t_interval(per_seed[name].to_list())) for name in per_seed.columns]
        ranking = rank(losses)
    elif len(per_seed.columns) >= LENTH_MIN_EFFECTS:
        lt = lenth(per_seed.iloc[0].to_list())
        rows = [(name, d, lt.me) for name, d in per_seed.iloc[0].items()]
        ranking = rank(losses, lt.difference_margin())
    else:  # no noise estimate: no margin, so nothing is distinguishable and all are tied
        rows = [(name, d, math.nan) for name, d in per_seed.iloc[0].items()]
        ranking = rank(losses, math.nan)
    eff = pd.DataFrame(rows, columns=["effect", "delta", "margin"])
    eff = eff.astype({"delta": float, "margin": float})
    eff["distinguishable"] = eff.delta.abs() > eff.margin
    return Analysis(len(seeds), factors, eff, ranking, lt)
