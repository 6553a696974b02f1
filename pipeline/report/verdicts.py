"""Three verdicts for every effect, and which variants are as good as the best.

- **Real**: the effect lies beyond its 95% margin, |d| > t(0.975, df) SE (the rule of
  ``distinguishable``, unchanged).
- **Negligible**: two one-sided tests (TOST: Schuirmann 1987, J. Pharmacokin. Biopharm. 15,
  657-680; Lakens 2017, Soc. Psychol. Personal. Sci. 8, 355-362), each at 5%, of "d <= -margin"
  and of "d >= +margin", with ``analysis.equivalence_margin`` as the margin. Both reject
  exactly when the 90% interval d +- t(0.95, df) SE lies strictly inside (-margin, +margin).
- **Undetermined**: neither; an interval that touches +-margin included. The run cannot say
  whether the effect matters: ``python -m pipeline.plan`` says how many seeds would.
- A real effect whose 90% interval also lies inside the margin stays real: it is there, and
  smaller than the margin (``below_margin``).
- **One seed, no negligible verdict.** Lenth's pseudo standard error comes from the effects
  themselves, assuming most of them are zero (effect sparsity): an interval built on it
  cannot show an effect is zero without assuming it. Real or undetermined only.
- **Equivalent to the best** (Hsu 1996, *Multiple Comparisons*, ch. 4): MCB's upper bound for
  variant i is max(0, mean_i - min over j != i of mean_j + M), M the MCB margin; strictly below
  the margin, variant i is within it of the true best with 95% confidence.
"""

from __future__ import annotations

import math

import pandas as pd

REAL, NEGLIGIBLE, UNDETERMINED = "real", "negligible", "undetermined"


def effect_verdict(delta: float, margin95: float, half90: float, eq_margin: float | None) -> str:
    """``real`` beyond the 95% margin; ``negligible`` when the 90% interval (``delta`` +-
    ``half90``) lies strictly inside +-``eq_margin``; else ``undetermined`` (also with no
    equivalence margin, or no 90% interval: NaN)."""
    if abs(delta) > margin95:
        return REAL
    return NEGLIGIBLE if below_margin(delta, half90, eq_margin) else UNDETERMINED


def below_margin(delta: float, half90: float, eq_margin: float | None) -> bool:
    """Whether the 90% interval lies strictly inside +-``eq_margin`` (TOST rejects both)."""
    return eq_margin is not None and abs(delta) + half90 < eq_margin


def mcb_upper(losses: pd.DataFrame, margin: float) -> dict[str, float]:
    """Each variant's MCB upper bound on (its mean - the best of the others' mean):
    max(0, mean_i - min_{j != i} mean_j + margin). ``losses``: variants x seeds."""
    means = losses.mean(axis=1)
    out = {}
    for variant, mean in means.items():
        others = means.drop(variant)
        out[str(variant)] = max(0.0, float(mean - others.min()) + margin) if len(others) else 0.0
    return out


def equivalent_to_best(losses: pd.DataFrame, margin: float, eq_margin: float | None) -> list[str]:
    """The variants within ``eq_margin`` of the true best (95%): MCB's upper bound strictly
    below it, in order of mean loss; none with no margin (one seed, or no verdict)."""
    if eq_margin is None or math.isnan(margin) or len(losses) < 2:
        return []
    upper = mcb_upper(losses, margin)
    order = losses.mean(axis=1).sort_values(kind="stable").index
    return [str(v) for v in order if upper[str(v)] < eq_margin]
