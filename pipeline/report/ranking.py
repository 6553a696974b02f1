"""Who is best: the variants by mean final loss, and which of them are tied with the lowest.

- **Seeds: Hsu's multiple comparisons with the best (MCB).** Hsu, J. C. (1996), *Multiple
  Comparisons: Theory and Methods*, ch. 4. Picking the lowest of V variants is a selection,
  and a gap that clears a per-comparison margin clears it more often than 5% of the time by
  chance when V - 1 gaps compete. MCB judges each variant's mean against the lowest of the
  others with the margin d x sigma x sqrt(2/n): the difference of two variant means, paired
  by seed (the seed blocks cancel), has SE sigma x sqrt(2/n) with the pooled sigma, and d is
  the one-sided Dunnett critical value for V - 1 comparisons on the pooled df (Dunnett 1955,
  JASA 50, 1096-1121). The variants within that margin of the lowest are tied with it: the
  true best is among them with 95% confidence. A variant is best only when it is the only
  one.
- **One seed: a per-comparison rule.** Lenth's noise gives no df fit for Dunnett's
  constant; the gap to the lowest is judged by t(0.975, m/3) x sqrt(2) x sigma for each
  variant alone, as the report says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import integrate, optimize, special

from pipeline.report.stats import LEVEL

# Probabilists' Gauss-Hermite nodes for E[f(Z)], Z ~ N(0, 1): the inner integral of Dunnett's.
_Z, _W = np.polynomial.hermite_e.hermegauss(64)
_W = _W / _W.sum()


def dunnett_one_sided(p: int, df: int, level: float = LEVEL) -> float:
    """The d with P(max_i T_i <= d) = ``level`` for p Student-t statistics that compare p
    means with one reference (correlation 1/2) on ``df`` degrees of freedom: Dunnett's
    one-sided constant. With s = sigma_hat / sigma ~ sqrt(chi2_df / df) and standard normal
    means, T_i <= d means Z_i <= Z_0 + sqrt(2) d s, so the coverage is
    E_s E_Z0[Phi(Z_0 + sqrt(2) d s)^p]: Gauss-Hermite over Z_0, adaptive quadrature over s."""
    log_norm = math.log(2) + df / 2 * math.log(df / 2) - float(special.gammaln(df / 2))

    def coverage(d: float) -> float:
        def given_s(s: float) -> float:  # E_Z0[...] times the density of s
            if s <= 0:
                return 0.0
            inner = float((_W * special.ndtr(_Z + math.sqrt(2) * d * s) ** p).sum())
            return inner * math.exp(log_norm + (df - 1) * math.log(s) - df * s * s / 2)

        return integrate.quad(given_s, 0, np.inf, limit=200, epsabs=1e-11)[0]

    return float(optimize.brentq(lambda d: coverage(d) - level, 0.0, 200.0, xtol=1e-9))


def mcb_margin(sigma: float, n_seeds: int, df: int, variants: int) -> float:
    """Hsu's MCB margin for V = ``variants`` means of ``n_seeds`` runs each, pooled ``sigma``
    on ``df`` degrees of freedom: d(V - 1, df) x sigma x sqrt(2 / n)."""
    return dunnett_one_sided(variants - 1, df) * sigma * math.sqrt(2 / n_seeds)


@dataclass(frozen=True)
class Ranking:
    """Variants by mean loss; ``tied``: those not separated from the lowest (it included).
    ``gaps``: for each other variant, its gap to the lowest and that gap's margin."""

    order: list[str]
    tied: list[str]
    gaps: dict[str, tuple[float, float]]  # variant -> (mean gap to the lowest, 95% margin)

    @property
    def best(self) -> str | None:
        """The lowest variant when it is separated from every other, else None (also when it
        is the only one: best is a comparison)."""
        return self.order[0] if len(self.tied) == 1 < len(self.order) else None


def rank(losses: pd.DataFrame, margin: float) -> Ranking:
    """``losses``: one row per variant, one column per seed. A variant whose mean gap to the
    lowest is not beyond ``margin`` is tied with it (a NaN margin: no verdict, all tied)."""
    means = losses.mean(axis=1)
    order = means.sort_values(kind="stable").index.tolist()
    tied, gaps = [order[0]], {}
    for variant in order[1:]:
        gap = float(means[variant] - means[order[0]])
        gaps[variant] = (gap, float(margin))
        if not gap > margin:  # NaN margins never separate
            tied.append(variant)
    return Ranking(order, tied, gaps)
