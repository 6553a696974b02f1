"""report.md: the ablation in words and tables, from the analysis (``analysis.py``) of the
cells (``results.py``): the method, the verdicts, the variants, the effects with their
verdicts and aliases, the noise by variant, provenance and samples."""

from __future__ import annotations

from typing import Any

import pandas as pd

from nanomoe.switches import BY_NAME, SWITCHES, Switch
from pipeline.report.analysis import Analysis
from pipeline.report.effects_text import design_words, effects_lines, pm, settle_line
from pipeline.report.ranking import Ranking


def shown(switch: Switch, level: Any) -> str:
    """A level as the variant table shows it: on/off for a boolean switch."""
    if all(isinstance(v, bool) for v in switch.levels):
        return "on" if level else "off"
    return switch.spell(level)


def variant_table(df: pd.DataFrame, ranking: Ranking) -> pd.DataFrame:
    t = df.groupby("variant").agg(
        **{s.name: (s.name, "first") for s in SWITCHES},
        final_val_bpb=("final_val_bpb", "mean"),
        final_std=("final_val_bpb", "std"),
        best_val_bpb=("best_val_bpb", "mean"),
        final_val_loss=("final_val_loss", "mean"),
        best_val_loss=("best_val_loss", "mean"),
        best_step=("best_step", "median"),
        bytes_seen=("bytes_seen", "mean"),
        epochs=("epochs", "mean"),
        tokens_per_sec=("tokens_per_sec", "mean"),
        params_total=("params_total", "first"),
        params_active=("params_active", "first"),
    )
    return t.loc[ranking.order].reset_index()


def verdict(a: Analysis) -> str:
    r = a.ranking
    if not a.judged:
        if not a.factors:
            return "**No verdict**: the grid varies no switch: one variant, nothing to compare."
        return (
            "**No verdict**: one seed gives too few effects to estimate the noise (see Method); "
            f"`{r.order[0]}` has the lowest final val bpb, but no gap is judged against noise."
        )
    rule = "Hsu's MCB margin" if a.n_seeds > 1 else "the per-comparison 95% margin"
    if r.best is not None:
        gap, margin = r.gaps[r.order[1]]
        best = (
            f"**Best variant: `{r.best}`**: {gap:.4f} below the runner-up `{r.order[1]}`, "
            f"beyond {rule} of {margin:.4f}."
        )
    else:
        names = ", ".join(f"`{v}`" for v in r.tied)
        best = (
            f"**No single best variant**: {names} are tied with the lowest final val bpb "
            f"(their gaps to it are within {rule} of {a.best_margin:.4f})."
        )
    return best + equivalent_words(a)


def equivalent_words(a: Analysis) -> str:
    """Which variants are within the equivalence margin of the true best (MCB)."""
    m = a.negligible_margin
    if m is None:
        return ""
    if not a.equivalent:
        return (
            f" No variant is shown **equivalent to the best** within Δ = {m:g} (MCB's upper "
            f"bound of each variant's gap to the best of the others reaches Δ)."
        )
    names = ", ".join(f"`{v}`" for v in a.equivalent)
    return (
        f" **Equivalent to the best** within Δ = {m:g} bpb (MCB's upper bound of the gap to "
        f"the best of the others below Δ, 95%): {names}."
    )


def spread_lines(a: Analysis) -> list[str]:
    """Unequal noise, shown: each variant's spread over seeds and Cochran's C."""
    c = a.spread
    if c is None:
        return []
    p = len(c.spread)
    if not c.can_flag:
        verdict_c = (
            f"but with {p} variants and the seed blocks removed C cannot exceed "
            f"{(p - 1) / p:.3f}: this design cannot show unequal noise, the spreads are for "
            "reading only"
        )
    elif c.unequal:
        verdict_c = f"above it: `{c.noisiest}` is noisier than the rest, and sigma pools it in"
    else:
        verdict_c = "within it: no sign that one variant is noisier than the rest"
    lines = [
        "## Noise by variant",
        "",
        "The pooled sigma assumes every variant is equally noisy. Each variant's spread over "
        "seeds, with the seeds' shared shift (the block) removed, and Cochran's C, the "
        "largest variance's share of their sum: "
        f"C = {c.c:.3f} against its approximate 5% critical value {c.critical:.3f}, "
        f"{verdict_c}."
        + (
            " With two seeds each variance rests on about one degree of freedom, so this is "
            "only a diagnostic (Levene's test cannot run at all: each variant's two "
            "deviations are equal)."
            if a.n_seeds == 2
            else " It is a diagnostic; the verdicts above do not depend on it."
        ),
        "",
        "| variant | spread over seeds (sd, blocks removed) |",
        "|---|---|",
    ]
    lines += [f"| `{v}` | {c.spread[v]:.4f} |" for v in a.ranking.order]
    return lines


def budget_words(df: pd.DataFrame) -> str:
    """The training budget: one figure when every cell had it, else a range per tokenizer."""
    steps, tokens = df.groupby("tokenizer").steps.first(), df.groupby("tokenizer").tokens.first()
    if steps.nunique() == 1:
        return f"{int(steps.iloc[0]):,} steps and {int(tokens.iloc[0]):,} tokens each"
    each = ", ".join(f"{t} {int(n):,}" for t, n in steps.items())
    return f"steps matched in bytes (tokenizer.match_bytes): {each}"


def render_markdown(
    df: pd.DataFrame, table: pd.DataFrame, a: Analysis, samples: dict, provenance: list[str]
) -> str:
    held = [f"{s.name} {shown(s, df[s.name].iloc[0])}" for s in SWITCHES if s.name not in a.factors]
    lines = [
        "# NanoMoE ablation report",
        "",
        f"{len(table)} variants x {a.n_seeds} seed(s), {budget_words(df)}; factors: "
        f"{', '.join(a.factors) or 'none'}"
        + (f"; held fixed: {', '.join(held)}" if held else "")
        + ". **Every comparison uses the final val bpb**: bits per UTF-8 byte of the whole "
        "validation text after the last step (the summed cross-entropy of the targets over "
        "ln 2 x their bytes, end-of-document targets left out), pure cross-entropy with no "
        "auxiliary loss in it, and the same text for every tokenizer. *Best val bpb* is the "
        "lowest periodic estimate during training (the fixed eval batches), as nanoGPT "
        "reports its best loss; *val loss* is nats per token, each tokenizer's own unit."
        + design_words(a),
        "",
        f"**Method**: {a.method}.",
        "",
        verdict(a),
        "",
        "## Variants, sorted by final validation bits per byte",
        "",
        f"| variant | {' | '.join(a.factors)} | final val bpb"
        + (" (mean ± std)" if a.n_seeds > 1 else "")
        + " | gap to lowest (± margin) | best val bpb | final val loss (nats/token) "
        "| best val loss (step) | MB seen | epochs | tokens/s | params total | params active |",
        "|---" * (len(a.factors) + 11) + "|",
    ]
    for r in table.to_dict("records"):
        gap = a.ranking.gaps.get(r["variant"])
        tied = " (tied)" if a.judged and r["variant"] in a.ranking.tied[1:] else ""
        levels = " | ".join(shown(BY_NAME[f], r[f]) for f in a.factors)
        lines.append(
            f"| `{r['variant']}` | {levels} | {pm(r['final_val_bpb'], r['final_std'])} | "
            f"{'lowest' if gap is None else pm(*gap) + tied} | {r['best_val_bpb']:.4f} | "
            f"{r['final_val_loss']:.4f} | {r['best_val_loss']:.4f} ({r['best_step']:,.0f}) | "
            f"{r['bytes_seen'] / 1e6:.2f} | {r['epochs']:.2f} | {r['tokens_per_sec']:,.0f} | "
            f"{r['params_total']:,} | {r['params_active']:,} |"
        )
    lines += ["", "## Effects on final val bpb (negative = better)", "", *effects_lines(a)]
    lines += ["", *spread_lines(a)] if a.spread else []
    lines += ["", *provenance]
    lines += ["", "## Samples, one per variant", "", "| variant | sample |", "|---|---|"]
    for variant in table.variant:
        text = samples[variant][:240].replace("|", "\\|").replace("\n", " ↵ ")
        lines.append(f"| `{variant}` | {text} |")
    lines += ["", "![validation bits per byte curves](ablation.png)", ""]
    lines += ["![validation bits per byte against training compute](compute.png)", ""]
    settle = settle_line(a, float(df.wall_s.mean()))
    lines += [settle, ""] if settle else []
    return "\n".join(lines)
