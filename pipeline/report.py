"""Stage ``report``: the ablation table, effects of each switch with their noise, curves,
samples, and one MLflow summary run for the whole ablation.

Reads the metrics.json, curve.csv, sample.txt and run.json that the train stages wrote under
experiments/ablation/ (every cell of params.yaml's ``grid:`` x every seed; a cell is known by
the switch levels and seed in its metrics.json) and writes experiments/ablation.csv,
report.md, ablation.png, compute.png and summary.json (the DVC metrics).

Every comparison uses the final validation loss (the full split after the last step). The
effects are the 2^k - 1 contrasts of the k switches the grid gives both levels. With two or
more seeds they are judged by t-intervals over seeds; with one seed by Lenth's pseudo
standard error, which needs at least 7 effects (k >= 3). With fewer, or with no factor, the
report says there is no verdict rather than guess. A variant is called best only when it is
separated from the runner-up (see ``pipeline/stats.py``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nanomoe.atomic import atomic_write_text
from nanomoe.config import display_path, read_json
from nanomoe.switches import BY_NAME, SWITCHES, Levels, Switch, cells, variant_name
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.plots import plot_ablation, plot_compute
from pipeline.stage import StageError, run_stage
from pipeline.stats import Analysis, Ranking, analyse
from pipeline.summary import log_summary_run, summary

Grid = Mapping[str, Sequence[Any]]  # params.yaml's grid: every switch -> its levels, low first
FIGURES = [
    "final_val_loss", "best_val_loss", "best_step", "train_loss", "tokens_per_sec", "wall_s",
    "steps", "tokens", "flops_per_token", "params_total", "params_active",
]  # fmt: skip
COLUMNS = ["variant", *BY_NAME, "seed", *FIGURES]
RERUN = "re-run its train stage (dvc repro)"


def is_level(switch: Switch, value: Any) -> bool:
    """Whether ``value`` is one of ``switch``'s levels, type included (``True`` is not ``1``)."""
    return any(value == v and type(value) is type(v) for v in switch.levels)


def read_metrics(path: Path) -> dict:
    """One cell's metrics.json, with every column the report needs and its folder as
    ``_dir``; a broken file stops the report with one line naming it."""
    m = read_json(path, RERUN)
    missing = [c for c in COLUMNS if not isinstance(m, dict) or c not in m]
    if missing:
        raise StageError(f"{display_path(path)}: {missing[0]}: is missing; {RERUN}")
    for s in SWITCHES:
        if not is_level(s, m[s.name]):
            raise StageError(
                f"{display_path(path)}: {s.name}: {m[s.name]!r} is not one of its levels "
                f"({' or '.join(s.spell(v) for v in s.levels)}); {RERUN}"
            )
    if not isinstance(m["seed"], int) or isinstance(m["seed"], bool):
        raise StageError(f"{display_path(path)}: seed: {m['seed']!r} is not valid; {RERUN}")
    return {**m, "_dir": path.parent}


def read_curve(path: Path) -> pd.DataFrame:
    try:
        curve = pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise StageError(f"{display_path(path)}: not valid CSV; {RERUN}") from None
    if not {"step", "val_loss"} <= set(curve.columns):
        raise StageError(f"{display_path(path)}: needs columns step and val_loss; {RERUN}")
    return curve


def levels_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The switch levels of a metrics.json (or a table row): its cell without the seed."""
    return {s.name: row[s.name] for s in SWITCHES}


def cell_key(levels: Levels, seed: int) -> tuple:
    return (*levels_of_row(levels).values(), seed)


def ignored_note(ignored: list[dict], grid: Grid, seeds: list[int]) -> str:
    """One line saying which runs on disk the report leaves out, and why."""
    in_grid = cells(grid)
    variants = sorted({variant_name(m) for m in ignored if levels_of_row(m) not in in_grid})
    other_seeds = sorted({m["seed"] for m in ignored} - set(seeds))
    why = [f"variants {variants}"] * bool(variants) + [f"seeds {other_seeds}"] * bool(other_seeds)
    return (
        f"ignoring {len(ignored)} run(s) on disk outside params.yaml's grid and seeds "
        f"({', '.join(why)})"
    )


def collect(ablation: Path, grid: Grid, seeds: list[int]) -> tuple[pd.DataFrame, dict, dict]:
    """Rows of every cell of ``grid`` x every seed of params.yaml from the cells'
    metrics.json files under ``ablation``, plus their eval curves and samples keyed by
    variant. Runs of other levels or seeds (an earlier grid's) are left out, saying so."""
    found: dict[tuple, dict] = {}
    for path in sorted(ablation.glob("*/metrics.json")):
        m = read_metrics(path)
        found[cell_key(m, m["seed"])] = m
    wanted = {cell_key(c, seed): (c, seed) for c in cells(grid) for seed in seeds}
    ignored = [m for key, m in found.items() if key not in wanted]
    if ignored:
        print(ignored_note(ignored, grid, seeds))
    rows, curves, samples, missing = [], {}, {}, []
    for key, (cell, seed) in wanted.items():
        m = found.get(key)
        if m is None:
            missing.append(f"{variant_name(cell)} seed {seed}")
            continue
        d = m.pop("_dir")
        run = read_json(d / "run.json", RERUN)
        if not isinstance(run, dict) or not isinstance(run.get("run_id"), str):
            raise StageError(f"{display_path(d / 'run.json')}: names no run_id; {RERUN}")
        rows.append({**{c: m[c] for c in COLUMNS}, **run})
        curves.setdefault(m["variant"], []).append(read_curve(d / "curve.csv"))
        samples.setdefault(m["variant"], (d / "sample.txt").read_text(encoding="utf-8"))
    if missing:
        raise StageError(
            f"{ablation.name}/: no metrics.json for {len(missing)} cell(s), e.g. {missing[0]}; "
            "run the train stages first (dvc repro)"
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, "run_id", "experiment"]), curves, samples


def shown(switch: Switch, level: Any) -> str:
    """A level as the variant table shows it: on/off for a boolean switch."""
    if all(isinstance(v, bool) for v in switch.levels):
        return "on" if level else "off"
    return switch.spell(level)


def variant_table(df: pd.DataFrame, ranking: Ranking) -> pd.DataFrame:
    t = df.groupby("variant").agg(
        **{s.name: (s.name, "first") for s in SWITCHES},
        final_val_loss=("final_val_loss", "mean"), final_std=("final_val_loss", "std"),
        best_val_loss=("best_val_loss", "mean"), best_step=("best_step", "median"),
        train_loss=("train_loss", "mean"), tokens_per_sec=("tokens_per_sec", "mean"),
        params_total=("params_total", "first"), params_active=("params_active", "first"),
    )  # fmt: skip
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
            f"`{r.order[0]}` has the lowest final val loss, but no gap is judged against noise."
        )
    if r.best is not None:
        gap, margin = r.gaps[r.order[1]]
        return (
            f"**Best variant: `{r.best}`**: {gap:.4f} below the runner-up `{r.order[1]}`, "
            f"beyond the 95% margin of {margin:.4f}."
        )
    names = ", ".join(f"`{v}`" for v in r.tied)
    return (
        f"**No single best variant**: {names} are tied with the lowest final val loss "
        "(their gaps to it are within the 95% margin)."
    )


def effects_lines(a: Analysis) -> list[str]:
    """The effects section of report.md."""
    if not a.factors:
        return ["No effects: the grid gives no switch both levels."]
    margin = "(t-interval over seeds)." if a.n_seeds > 1 else "(Lenth's ME)."
    lines = [
        "Main effect: mean loss at the switch's high level minus its low level, over the "
        "other factors. Interaction A x B: half the change in A's effect when B goes high; "
        "A x B x C: the same for the A x B interaction when C goes high. "
        + (f"± is the 95% margin {margin}" if a.judged else "No margin: no verdict."),
        "",
        "| effect | Δ val loss | distinguishable from noise |",
        "|---|---|---|",
    ]
    for r in a.effects.itertuples():
        judged = ("yes" if r.distinguishable else "no") if a.judged else "no verdict"
        lines.append(f"| {r.effect} | {_pm(r.delta, r.margin)} | {judged} |")
    return lines


def render_markdown(df: pd.DataFrame, table: pd.DataFrame, a: Analysis, samples: dict) -> str:
    steps, tokens = int(df.steps.iloc[0]), int(df.tokens.iloc[0])
    held = [f"{s.name} {shown(s, df[s.name].iloc[0])}" for s in SWITCHES if s.name not in a.factors]
    lines = [
        "# NanoMoE ablation report",
        "",
        f"{len(table)} variants x {a.n_seeds} seed(s), {steps:,} steps and {tokens:,} tokens "
        f"each; factors: {', '.join(a.factors) or 'none'}"
        + (f"; held fixed: {', '.join(held)}" if held else "")
        + ". **Every comparison uses the final val loss**: the mean cross-entropy (nats per "
        "character) over the whole validation split after the last step, with no auxiliary "
        "loss in it. *Best val loss* is the lowest periodic estimate during training (the "
        "fixed eval batches), the number nanoGPT reports, with its step.",
        "",
        f"**Method**: {a.method}.",
        "",
        verdict(a),
        "",
        "## Variants, sorted by final validation loss",
        "",
        f"| variant | {' | '.join(BY_NAME)} | final val loss"
        + (" (mean ± std)" if a.n_seeds > 1 else "")
        + " | gap to lowest (± 95% margin) | best val loss (step) | train loss | tokens/s "
        "| params total | params active |",
        "|---" * (len(SWITCHES) + 8) + "|",
    ]
    for r in table.to_dict("records"):
        gap = a.ranking.gaps.get(r["variant"])
        tied = " (tied)" if a.judged and r["variant"] in a.ranking.tied[1:] else ""
        levels = " | ".join(shown(s, r[s.name]) for s in SWITCHES)
        lines.append(
            f"| `{r['variant']}` | {levels} | {_pm(r['final_val_loss'], r['final_std'])} | "
            f"{'lowest' if gap is None else _pm(*gap) + tied} | "
            f"{r['best_val_loss']:.4f} ({r['best_step']:,.0f}) | {r['train_loss']:.4f} | "
            f"{r['tokens_per_sec']:,.0f} | {r['params_total']:,} | {r['params_active']:,} |"
        )
    lines += ["", "## Effects on final validation loss (negative = better)", "", *effects_lines(a)]
    lines += ["", "## Samples, one per variant", "", "| variant | sample |", "|---|---|"]
    for variant in table.variant:
        text = samples[variant][:240].replace("|", "\\|").replace("\n", " ↵ ")
        lines.append(f"| `{variant}` | {text} |")
    lines += ["", "![validation loss curves](ablation.png)", "",
              "![validation loss against training compute](compute.png)", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m pipeline.report", description=__doc__.split("\n")[0]
    ).parse_args(argv)
    layout = Layout.load()
    params = load_params(layout.root / "params.yaml")
    for levels in cells(params.grid):  # dvc.yaml written for another grid: say so, not "missing"
        layout.train_stage(levels)
    df, curves, samples = collect(layout.require(layout.ablation), params.grid, params.seeds)
    a = analyse(df, params.grid)
    table = variant_table(df, a.ranking)
    out = layout.outs("report")
    buf = io.StringIO()
    df.drop(columns="run_id").sort_values([*BY_NAME, "seed"]).to_csv(buf, index=False)
    atomic_write_text(out["ablation.csv"], buf.getvalue())
    atomic_write_text(out["report.md"], render_markdown(df, table, a, samples))
    lowest = float(table.final_val_loss.min())
    plot_ablation(curves, a.ranking.order, lowest, out["ablation.png"])
    per_step = (df.tokens / df.steps * df.flops_per_token).groupby(df.variant).first()
    plot_compute(curves, per_step.to_dict(), a.ranking.order, lowest, out["compute.png"])
    summ = summary(df, a, params.grid)
    atomic_write_text(out["summary.json"], json.dumps(summ, indent=2))
    print(table[["variant", "final_val_loss", "final_std", "best_val_loss"]].to_string(index=False))
    for r in a.effects.itertuples():
        mark = ("distinguishable" if r.distinguishable else "within noise") if a.judged else ""
        print(f"{r.effect:24s} {_pm(r.delta, r.margin):>18s}  {mark}")
    print(verdict(a).replace("**", "").replace("`", ""))
    names = ("report.md", "ablation.png", "compute.png", "ablation.csv", "summary.json")
    try:
        run_id = log_summary_run(df, params, summ, [out[n] for n in names])
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
