"""Stage ``report``: the ablation table, effects of each switch with their noise, curves,
samples, and one MLflow summary run for the whole ablation.

Reads the cells the train stages wrote under experiments/ablation/ (every cell of params.yaml's
``grid:`` x every seed: ``pipeline/report/results.py``) and writes experiments/ablation.csv,
report.md, ablation.png, compute.png and summary.json (the DVC metrics).

Every comparison uses the final validation loss (the full split after the last step). The
effects are the 2^k - 1 contrasts of the k switches the grid gives both levels. With two or
more seeds they are judged as a replicated factorial with the seeds as blocks (the pooled
cell x seed noise); with one seed by Lenth's pseudo standard error, which needs at least 7
effects (k >= 3). With fewer, or with no factor, the report says there is no verdict rather
than guess. A variant is called best only when it is separated from every other: Hsu's MCB
with seeds, a per-comparison margin with one (``pipeline/report/analysis.py``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
from typing import Any

import pandas as pd

from nanomoe.atomic import atomic_write_text
from nanomoe.switches import BY_NAME, SWITCHES, Switch, cells
from pipeline.plots import plot_ablation, plot_compute
from pipeline.project import Project
from pipeline.report.analysis import METRIC, Analysis, analyse
from pipeline.report.provenance import mixed, portable, provenance_lines, unresolved
from pipeline.report.ranking import Ranking
from pipeline.report.results import collect
from pipeline.report.summary import log_summary_run, summary
from pipeline.stage import StageError, run_stage
from pipeline.tracking import check_store, tracking_uri


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


def _pm(mean: float, spread: float) -> str:
    return f"{mean:.4f}" if math.isnan(spread) else f"{mean:.4f} ± {spread:.4f}"


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
        return (
            f"**Best variant: `{r.best}`**: {gap:.4f} below the runner-up `{r.order[1]}`, "
            f"beyond {rule} of {margin:.4f}."
        )
    names = ", ".join(f"`{v}`" for v in r.tied)
    return (
        f"**No single best variant**: {names} are tied with the lowest final val bpb "
        f"(their gaps to it are within {rule} of {a.best_margin:.4f})."
    )


def effects_lines(a: Analysis) -> list[str]:
    """The effects section of report.md."""
    if not a.factors:
        return ["No effects: the grid gives no switch both levels."]
    margin = "(pooled over cells and seeds)." if a.n_seeds > 1 else "(Lenth's ME)."
    lines = [
        "Main effect: mean loss at the switch's high level minus its low level, over the "
        "other factors. Interaction A x B: half the change in A's effect when B goes high; "
        "A x B x C: the same for the A x B interaction when C goes high. "
        + (f"± is the 95% margin {margin}" if a.judged else "No margin: no verdict."),
        "",
        f"| effect | Δ {METRIC.replace('_', ' ')} | distinguishable from noise |",
        "|---|---|---|",
    ]
    for r in a.effects.itertuples():
        judged = ("yes" if r.distinguishable else "no") if a.judged else "no verdict"
        lines.append(f"| {r.effect} | {_pm(r.delta, r.margin)} | {judged} |")
    if a.judged:
        beyond = a.effects[a.effects.delta.abs() > a.noise.sme].effect.to_list()
        lines += [
            "",
            f"Judged all at once, the {len(a.effects)} effects' 95% simultaneous margin is "
            f"{a.noise.sme:.4f}; beyond it: {', '.join(beyond) or 'none'}. An effect beyond "
            f"it stays real even counting that {len(a.effects)} effects were looked at.",
        ]
    return lines


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
        "reports its best loss; *val loss* is nats per token, each tokenizer's own unit.",
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
            f"| `{r['variant']}` | {levels} | {_pm(r['final_val_bpb'], r['final_std'])} | "
            f"{'lowest' if gap is None else _pm(*gap) + tied} | {r['best_val_bpb']:.4f} | "
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m pipeline.report", description=__doc__.split("\n")[0]
    ).parse_args(argv)
    project = Project.load()
    layout, grid = project.layout, project.params.grid
    check_store()  # a tracking server that does not answer: one line now, not at the end
    for levels in cells(grid):  # dvc.yaml written for another grid: say so, not "missing"
        layout.train_stage(levels)
    df, curves, samples = collect(layout.require(layout.ablation), grid, project.params.seeds)
    a = analyse(df, grid)
    table = variant_table(df, a.ranking)
    out = layout.outs("report")
    buf = io.StringIO()
    df.drop(columns="run_id").sort_values([*BY_NAME, "seed"]).to_csv(buf, index=False)
    atomic_write_text(out["ablation.csv"], buf.getvalue())
    missing = unresolved(list(df.run_id))
    origin = provenance_lines(df, missing, portable(tracking_uri(), project.root))
    atomic_write_text(out["report.md"], render_markdown(df, table, a, samples, origin))
    lowest = float(table.final_val_bpb.min())
    plot_ablation(curves, a.ranking.order, lowest, out["ablation.png"])
    per_step = (df.tokens / df.steps * df.flops_per_token).groupby(df.variant).first()
    plot_compute(curves, per_step.to_dict(), a.ranking.order, lowest, out["compute.png"])
    summ = summary(df, a, grid, missing)
    atomic_write_text(out["summary.json"], json.dumps(summ, indent=2))
    print(table[["variant", "final_val_bpb", "final_std", "best_val_bpb"]].to_string(index=False))
    for r in a.effects.itertuples():
        mark = ("distinguishable" if r.distinguishable else "within noise") if a.judged else ""
        print(f"{r.effect:24s} {_pm(r.delta, r.margin):>18s}  {mark}")
    print(verdict(a).replace("**", "").replace("`", ""))
    for line in mixed(df):
        print(f"warning: cells trained under different runtimes: {line} (see report.md)")
    if missing:
        print(f"warning: {len(missing)} cell run(s) not in {tracking_uri()}: see report.md")
    names = ("report.md", "ablation.png", "compute.png", "ablation.csv", "summary.json")
    try:
        run_id = log_summary_run(df, project.params, summ, [out[n] for n in names])
    except Exception as err:
        raise StageError(
            f"{layout.relative(out['report.md'])}: written, but the MLflow summary run failed "
            f"({err.__class__.__name__}); fix the store (MLFLOW_TRACKING_URI) and run "
            "dvc repro report"
        ) from None
    print(f"report: {layout.relative(out['report.md'])}; MLflow summary run {run_id}")
    return 0


if __name__ == "__main__":
    run_stage(main)
