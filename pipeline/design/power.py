"""Power: how many seeds a question needs, for a design of C cells each trained on n seeds.

The report (``pipeline/report/stats.py``) estimates every effect with SE = 2 sigma / sqrt(C n)
from a pooled sigma on df = (C - 1)(n - 1) degrees of freedom; sigma_hat = sigma s with
s^2 ~ chi2(df) / df, independent of the effect's estimate d ~ N(theta, SE^2).

- **Detection** (an effect of size theta called real). The report calls it real when
  |d| / SE_hat > t(1 - alpha/2, df). T = d / SE_hat is noncentral t with df degrees of
  freedom and noncentrality lambda = theta / SE, so
  power = 1 - F_nct(t_c; df, lambda) + F_nct(-t_c; df, lambda), t_c = t(1 - alpha/2, df)
  (scipy.stats.nct; no normal approximation, which overstates power at small df).
- **Equivalence** (an effect theta called negligible at margin M). TOST rejects both
  one-sided nulls when |d| + t(1 - alpha, df) SE_hat < M. Given s, that is d in
  (-M + t SE s, M - t SE s), so
  power = E_s[ max(0, Phi((M - theta - t SE s) / SE) - Phi((-M - theta + t SE s) / SE)) ],
  the integral Owen's Q function expresses (Owen 1965, Biometrika 52, 437-446; Phillips
  1990, J. Pharmacokin. Biopharm. 18, 137-144), here by quadrature over the density of s.
- **Seeds needed**: the smallest n >= 2 whose power reaches the target (0.8 by default).

alpha = 1 - LEVEL = 0.05, the report's level. tests/test_power.py checks both against 20,000
simulated replicated designs run through the report's own analysis.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import integrate, special, stats

LEVEL = 0.95  # the report's: 95% margins, and TOST's 90% interval (two 5% one-sided tests)
POWER = 0.8
MAX_SEEDS = 64


def effect_se(sigma: float, cells: int, n_seeds: int) -> float:
    """One effect's standard error: 2 sigma / sqrt(C n)."""
    return 2 * sigma / math.sqrt(cells * n_seeds)


def pooled_df(cells: int, n_seeds: int) -> int:
    """The pooled cell x seed noise's degrees of freedom: (C - 1)(n - 1)."""
    return (cells - 1) * (n_seeds - 1)


def detection_power(effect: float, sigma: float, cells: int, n_seeds: int) -> float:
    """The chance that an effect of size ``effect`` is called real (noncentral t)."""
    df = pooled_df(cells, n_seeds)
    lam = effect / effect_se(sigma, cells, n_seeds)
    tc = float(stats.t.ppf(0.5 + LEVEL / 2, df))
    return float(stats.nct.sf(tc, df, lam) + stats.nct.cdf(-tc, df, lam))


def equivalence_power(
    margin: float, sigma: float, cells: int, n_seeds: int, effect: float = 0.0
) -> float:
    """The chance that an effect of true size ``effect`` is called negligible at ``margin``
    (TOST at the report's level), integrated over the sampling of sigma_hat."""
    df = pooled_df(cells, n_seeds)
    se = effect_se(sigma, cells, n_seeds)
    t = float(stats.t.ppf(LEVEL, df))
    s_max = margin / (t * se)  # beyond it the 90% interval is wider than the margin
    log_norm = math.log(2) + df / 2 * math.log(df / 2) - float(special.gammaln(df / 2))

    def given_s(s: float) -> float:  # P(d inside the shrunk margin | s) x the density of s
        if s <= 0:
            return 0.0
        half = margin - t * se * s
        inside = special.ndtr((half - effect) / se) - special.ndtr((-half - effect) / se)
        return inside * math.exp(log_norm + (df - 1) * math.log(s) - df * s * s / 2)

    return float(integrate.quad(given_s, 0, s_max, limit=200, epsabs=1e-12)[0])


def seeds_needed(
    power: Callable[[int], float], target: float = POWER, max_seeds: int = MAX_SEEDS
) -> int | None:
    """The smallest n in [2, ``max_seeds``] with ``power(n) >= target``; None if none."""
    return next((n for n in range(2, max_seeds + 1) if power(n) >= target), None)


def seeds_to_settle(
    effect: float,
    margin: float,
    sigma: float,
    cells: int,
    target: float = POWER,
    max_seeds: int = MAX_SEEDS,
) -> tuple[int | None, int | None]:
    """(seeds to call an effect of ``effect`` real, seeds to call a zero effect negligible at
    ``margin``), each with power ``target``: together, the seeds that settle an undetermined
    effect (the report asks with ``effect`` = ``margin``)."""
    detect = seeds_needed(lambda n: detection_power(effect, sigma, cells, n), target, max_seeds)
    equiv = seeds_needed(lambda n: equivalence_power(margin, sigma, cells, n), target, max_seeds)
    return detect, equiv
