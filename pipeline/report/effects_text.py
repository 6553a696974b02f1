"""The effects of report.md in words: each contrast with its interval, verdict and alias
chain, the rules the verdicts follow, a fractional design's warning for the first paragraph,
and the closing line of the power plan (``pipeline/design/power.py``)."""

from __future__ import annotations

import math
from typing import Any

from pipeline.design.fraction import LETTERS, ROMAN
from pipeline.design.power import MAX_SEEDS, POWER, seeds_to_settle
from pipeline.report.analysis import METRIC, Analysis
from pipeline.report.stats import Pooled
from pipeline.report.verdicts import REAL, UNDETERMINED


def pm(mean: float, spread: float) -> str:
    return f"{mean:.4f}" if math.isnan(spread) else f"{mean:.4f} ± {spread:.4f}"


def rule_words(a: Analysis) -> str:
    """The three verdicts' rules, as this run applies them."""
    m = a.equivalence_margin
    if a.negligible_margin is not None:
        half = a.effects.half90.iloc[0]
        negligible = (
            f"**negligible** when its 90% interval (± t(0.95, {a.noise.df}) x SE = {half:.4f}) "
            f"lies strictly inside ±Δ = ±{m:g} bpb (two one-sided tests, TOST: Schuirmann "
            "1987; Lakens 2017; Δ is analysis.equivalence_margin)"
        )
    elif isinstance(a.noise, Pooled):
        negligible = "never **negligible**: analysis.equivalence_margin is null"
    else:
        negligible = (
            "never **negligible** with one seed: Lenth's PSE is estimated from the effects "
            "themselves on the assumption that most are zero, so it cannot show that one is"
        )
    return (
        f"Verdicts: **real** beyond its 95% margin; {negligible}; **undetermined** otherwise "
        "(an interval touching ±Δ included): the run cannot tell whether it matters."
    )


def shown_verdict(r: Any) -> str:
    if r.verdict is None:
        return "no verdict"
    return f"{r.verdict} (inside ±Δ)" if r.verdict == REAL and r.below_margin else r.verdict


def effects_lines(a: Analysis) -> list[str]:
    """The effects section of report.md."""
    if not a.factors:
        return ["No effects: the grid gives no switch both levels."]
    margin = "(pooled over cells and seeds)." if a.n_seeds > 1 else "(Lenth's ME)."
    aliased = bool(a.design and a.design.relation)
    lines = [
        "Main effect: mean loss at the switch's high level minus its low level, over the "
        "other factors. Interaction A x B: half the change in A's effect when B goes high; "
        "A x B x C: the same for the A x B interaction when C goes high. "
        + (
            f"± is the 95% margin {margin} " + rule_words(a)
            if a.judged
            else "No margin: no verdict."
        ),
        "",
        f"| effect | Δ {METRIC.replace('_', ' ')} | 90% interval | distinguishable from noise "
        "| verdict |" + (" estimates (alias chain) |" if aliased else ""),
        "|---|---|---|---|---|" + ("---|" if aliased else ""),
    ]
    for r in a.effects.itertuples():
        judged = ("yes" if r.distinguishable else "no") if a.judged else "no verdict"
        ci = (
            "–" if math.isnan(r.half90) else f"[{r.delta - r.half90:.4f}, {r.delta + r.half90:.4f}]"
        )
        chain = f" {r.aliases} |" if aliased else ""
        cols = f"{r.effect} | {pm(r.delta, r.margin)} | {ci} | {judged} | {shown_verdict(r)}"
        lines.append(f"| {cols} |{chain}")
    if a.judged:
        beyond = a.effects[a.effects.delta.abs() > a.noise.sme].effect.to_list()
        lines += [
            "",
            f"Judged all at once, the {len(a.effects)} effects' 95% simultaneous margin is "
            f"{a.noise.sme:.4f}; beyond it: {', '.join(beyond) or 'none'}. An effect beyond "
            f"it stays real even counting that {len(a.effects)} effects were looked at.",
        ]
    return lines


def design_words(a: Analysis) -> str:
    """The first paragraph's words on a fractional design: which, and its aliases' warning."""
    d = a.design
    if d is None or not d.fractional:
        return ""
    k, p = len(d.factors), len(d.words)
    lettered = ", ".join(f"{LETTERS[i]} {f}" for i, f in enumerate(d.factors))
    if d.foldover:
        return (
            f" **A fold-over**: both halves of the 2^({k}-1) fraction {d.generators[0]} "
            f"({lettered}), analysed together as the full 2^{k} design, with no aliases (the "
            "halves may have trained at different times: a shift between them would sit in "
            "the highest-order interaction)."
        )
    example = next(r for r in a.effects.itertuples() if r.aliases)
    return (
        f" **A 2^({k}-{p}) fraction**, resolution {ROMAN.get(d.resolution, d.resolution)}: "
        f"generators {', '.join(d.generators)} ({lettered}), defining relation "
        f"{d.defining_relation()}; {2 ** (k - p)} of the grid's {2**k} cells. **Each "
        f"contrast's verdict is about its whole alias chain**, not its first name: "
        f"'{example.effect}' estimates {example.aliases}, and a real contrast may come from "
        "any member of its chain (the Effects table prints every chain; grid.fraction: "
        "foldover trains the other half and separates them)."
    )


def settle_line(a: Analysis, wall_s: float) -> str:
    """The report's last line: the seeds that would settle its undetermined effects."""
    m = a.negligible_margin
    if m is None:
        return ""
    undetermined = int((a.effects.verdict == UNDETERMINED).sum())
    if not undetermined:
        return f"No effect is undetermined at Δ = {m:g}: no more seeds are needed to settle one."
    cells = len(a.ranking.order)
    detect, equiv = seeds_to_settle(m, m, a.noise.sigma, cells)
    if detect is None or equiv is None:
        return (
            f"To settle the {undetermined} undetermined effect(s) at Δ = {m:g}: more than "
            f"{MAX_SEEDS} seeds; a larger Δ or a smaller design would do (python -m pipeline.plan)."
        )
    n = max(detect, equiv)
    return (
        f"To settle the {undetermined} undetermined effect(s) at Δ = {m:g}: {n} seeds, about "
        f"{cells * n * wall_s / 3600:.1f} cell-hours here ({cells} cells x {n} seeds at the "
        f"last run's {wall_s:.0f} s per cell; divide by the workers running at once), so that "
        f"an effect of Δ is called real and a zero one negligible, each with power {POWER:g} "
        "(python -m pipeline.plan for the table and the fractions)."
    )
