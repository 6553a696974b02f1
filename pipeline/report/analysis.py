"""The ablation judged on final_val_bpb: effects with their margins (``pipeline/report/stats.py``),
the variants ranked (``pipeline/report/ranking.py``), and the method in words for the report.

Two or more seeds: the replicated factorial with seeds as blocks, and Hsu's MCB for best.
One seed: Lenth's method, and a per-comparison rule for best. Too little to judge (no
varying switch, or one seed with fewer than 7 effects): no verdict. Each effect's verdict,
real, negligible or undetermined: ``pipeline/report/verdicts.py``. A fractional design
(``pipeline/design/fraction.py``) estimates one contrast per alias chain, over the cells it ran.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from nanomoe.switches import varying
from pipeline.design.fraction import Design
from pipeline.params.sections import AnalysisParams
from pipeline.report.ranking import Ranking, dunnett_one_sided, mcb_margin, rank
from pipeline.report.stats import (
    LENTH_MIN_EFFECTS,
    Cochran,
    Lenth,
    Pooled,
    cochran,
    factorial_effects,
    label,
    lenth,
    pooled,
    t_quantile,
)
from pipeline.report.verdicts import below_margin, effect_verdict, equivalent_to_best

# The judged figure: bits per UTF-8 byte of the whole validation text after the last step,
# the one unit that compares cells across tokenizers (nats per token do not).
METRIC = "final_val_bpb"

METHODS = {Pooled: "replicated factorial", Lenth: "lenth"}  # summary.json's ``method``
EQUIVALENCE_MARGIN = AnalysisParams().equivalence_margin  # params.yaml's default, in bpb


@dataclass
class Analysis:
    n_seeds: int
    factors: list[str]  # the switches the grid gives both levels: the design's factors
    # effect, delta, margin (NaN: no verdict), distinguishable, half90 (the 90% interval's
    # half-width; NaN: none), verdict (None: no verdict), below_margin, aliases ("" if none)
    effects: pd.DataFrame
    ranking: Ranking
    noise: Pooled | Lenth | None  # None: no noise estimate, no verdict
    best_margin: float  # a gap to the lowest variant beyond this separates it (NaN: none)
    spread: Cochran | None = None  # two or more seeds only
    design: Design | None = None  # None: the full design of ``factors``
    equivalence_margin: float | None = EQUIVALENCE_MARGIN  # bpb; None: nothing negligible
    equivalent: list[str] | None = None  # variants within the margin of the best (MCB)

    @property
    def lenth(self) -> Lenth | None:
        return self.noise if isinstance(self.noise, Lenth) else None

    @property
    def judged(self) -> bool:
        return self.noise is not None

    @property
    def kind(self) -> str:
        """The method in one or two words, as summary.json and MLflow record it."""
        return METHODS[type(self.noise)] if self.judged else "none"

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
    def negligible_margin(self) -> float | None:
        """The equivalence margin the verdicts applied: None with no margin set, and with one
        seed (Lenth's noise calls nothing negligible)."""
        return self.equivalence_margin if isinstance(self.noise, Pooled) else None

    @property
    def design_name(self) -> str:
        """``2^3 factorial``, or a fraction's ``2^(4-1) fraction`` (a fold-over is full)."""
        k = len(self.factors)
        p = len(self.design.words) if self.design and self.design.relation else 0
        return f"2^({k}-{p}) fraction" if p else f"2^{k} factorial"

    @property
    def method(self) -> str:
        if not self.factors:
            return f"no verdict: {self.why_no_verdict}; give a switch both levels under grid:"
        if self.noise is None:
            return (
                f"no verdict: {self.why_no_verdict}, so the effects carry no margin, none is "
                "called distinguishable and no variant is called best; list two or more "
                "seeds under seeds: in params.yaml to judge them as a replicated factorial"
            )
        if isinstance(self.noise, Pooled):
            return self._pooled_method(self.noise)
        lt, variants = self.noise, len(self.ranking.order)
        return (
            f"one seed: Lenth's method for unreplicated factorials (Lenth 1989). Pseudo "
            f"standard error PSE = {lt.pse:.4f} from the {len(self.effects)} effects; 95% "
            f"margin ME = t(0.975, m/3 = {lt.df:.2f}) x PSE = {lt.me:.4f} (simultaneous over "
            f"all effects: SME = {lt.sme:.4f}); a single run's noise is estimated as "
            f"sigma = {lt.sigma:.4f}, so two runs differ beyond noise by more than "
            f"{lt.difference_margin():.4f}. Best uses that per-comparison margin, not "
            f"corrected for picking the lowest of {variants} variants: train two or more "
            "seeds for a verdict that is"
        )

    def _pooled_method(self, p: Pooled) -> str:
        variants = len(self.ranking.order)
        d = dunnett_one_sided(variants - 1, p.df)
        two = (
            "; with two variants MCB is a one-sided test and the effect's margin two-sided, "
            "so near the margin they can differ"
            if variants == 2
            else ""
        )
        return (
            f"replicated {self.design_name}, {self.n_seeds} seeds as blocks "
            f"(Montgomery, ch. 6-7): sigma = {p.sigma:.4f} from the pooled cell x seed "
            f"interaction, df = {p.df}; each effect has SE = 2 sigma / sqrt(N) = {p.se:.4f} "
            f"over N = {(p.m + 1) * p.n_seeds} runs, 95% margin t(0.975, {p.df}) x SE = "
            f"{p.me:.4f} (simultaneous over all {p.m} effects: {p.sme:.4f}). Best: Hsu's "
            f"multiple comparisons with the best: a gap to the lowest counts when it exceeds "
            f"d x sigma x sqrt(2/{self.n_seeds}) = {self.best_margin:.4f}, d = {d:.3f} the "
            f"one-sided Dunnett constant for {variants - 1} comparisons on {p.df} df{two}"
        )


def _noise(per_seed: pd.DataFrame, losses: pd.DataFrame) -> tuple[Pooled | Lenth | None, float]:
    """The noise estimate and the margin of a gap to the lowest variant."""
    if losses.shape[1] >= 2:
        p = pooled(losses)
        return p, mcb_margin(p.sigma, p.n_seeds, p.df, len(losses))
    if len(per_seed.columns) >= LENTH_MIN_EFFECTS:
        lt = lenth(per_seed.iloc[0].to_list())
        return lt, lt.difference_margin()
    return None, math.nan


def alias_text(chain: list[tuple[int, tuple[str, ...]]]) -> str:
    """An alias chain as the report prints it: ``moe + rope x fgram x tokenizer``."""
    words = [" x ".join(c) for _, c in chain]
    return words[0] + "".join(
        f" {'-' if s < 0 else '+'} {w}" for (s, _), w in zip(chain[1:], words[1:], strict=True)
    )


def analyse(
    df: pd.DataFrame,
    grid: Mapping[str, Sequence[Any]],
    metric: str = METRIC,
    design: Design | None = None,
    equivalence_margin: float | None = EQUIVALENCE_MARGIN,
) -> Analysis:
    """Effects of the grid's factors (the switches it gives both levels, each coded +1 at
    its high level) with their margins and verdicts, and the ranking of the variants, on
    ``metric``: ``df`` has one row per cell and seed (variant, the switches, seed, the
    metric), the cells ``design`` trains (default: every cell of the grid)."""
    factors = [s.name for s in varying(grid)]
    design = design or Design(tuple(factors))
    if list(design.factors) != factors:
        raise ValueError(f"analyse: the design's factors {design.factors} are not {factors}")
    chains = design.estimates()
    coded = df.assign(**{s.name: df[s.name] == s.high for s in varying(grid)})
    contrasts = [chain[0][1] for chain in chains]
    per_seed = pd.DataFrame(
        [factorial_effects(coded[coded.seed == s], factors, metric, contrasts)
         for s in sorted(df.seed.unique())],
        columns=[label(c) for c in contrasts],
    )  # fmt: skip
    losses = df.pivot(index="variant", columns="seed", values=metric)
    if losses.isna().any().any():  # results.collect refuses this; a caller of analyse may not
        raise ValueError("analyse: every variant needs a loss for every seed")
    noise, margin = _noise(per_seed, losses) if factors else (None, math.nan)
    eff = pd.DataFrame({"effect": per_seed.columns, "delta": per_seed.mean().to_numpy()})
    eff["margin"] = noise.me if noise is not None else math.nan
    eff = eff.astype({"delta": float, "margin": float})
    eff["distinguishable"] = eff.delta.abs() > eff.margin
    pooled_noise = isinstance(noise, Pooled)  # Lenth's noise calls nothing negligible
    eff["half90"] = t_quantile(0.95, noise.df) * noise.se if pooled_noise else math.nan
    eq = equivalence_margin if pooled_noise else None
    eff["verdict"] = [
        effect_verdict(r.delta, r.margin, r.half90, eq) if noise is not None else None
        for r in eff.itertuples()
    ]
    eff["below_margin"] = [below_margin(r.delta, r.half90, eq) for r in eff.itertuples()]
    eff["aliases"] = [alias_text(c) if len(c) > 1 else "" for c in chains]
    spread = cochran(losses) if pooled_noise else None
    ranking = rank(losses, margin)
    equivalent = equivalent_to_best(losses, margin, eq)
    return Analysis(
        losses.shape[1], factors, eff, ranking, noise, margin, spread, design,
        equivalence_margin, equivalent,
    )  # fmt: skip
