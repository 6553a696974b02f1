"""Stage ``report``: the ablation table, effects of each switch with their noise, curves,
samples, and one MLflow summary run for the whole ablation.

Reads the metrics.json, curve.csv, sample.txt and run.json that the train stages wrote under
experiments/ablation/ (every variant x every seed of params.yaml; a cell is known by the
switches and seed in its metrics.json) and writes experiments/ablation.csv, report.md,
ablation.png, compute.png and summary.json (the DVC metrics).

Every comparison uses the final validation loss (the full split after the last step). The
effects are the 7 contrasts of the 2^3 factorial; with one seed they are judged by Lenth's
pseudo standard error, with more by t-intervals over seeds; a variant is called best only
when it is separated from the runner-up (see ``pipeline/stats.py``).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nanomoe.atomic import atomic_write_text
from nanomoe.config import display_path, read_json, variant_name
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.plots import plot_ablation, plot_compute
from pipeline.stage import StageError, run_stage
from pipeline.stats import Lenth, Ranking, factorial_effects, lenth, rank, t_interval
from pipeline.summary import log_summary_run, summary

SWITCHES = ("rope", "moe", "fgram")
COLUMNS = [
    "variant", "rope", "moe", "fgram", "seed", "final_val_loss", "best_val_loss", "best_step",
    "train_loss", "tokens_per_sec", "wall_s", "steps", "tokens", "flops_per_token",
    "params_total", "params_active",
]  # fmt: skip
RERUN = "re-run its train stage (dvc repro)"


def read_metrics(path: Path) -> dict:
    """One cell's metrics.json, with every column the report needs and its folder as
    ``_dir``; a broken file stops the report with one line naming it."""
    m = read_json(path, RERUN)
    missing = [c for c in COLUMNS if not isinstance(m, dict) or c not in m]
    if missing:
        raise StageError(f"{display_path(path)}: {missing[0]}: is missing; {RERUN}")
    bad = [s for s in SWITCHES if not isinstance(m[s], bool)]
    if bad or not isinstance(m["seed"], int) or isinstance(m["seed"], bool):
        field = bad[0] if bad else "seed"
        raise StageError(f"{display_path(path)}: {field}: {m[field]!r} is not valid; {RERUN}")
    return {**m, "_dir": path.parent}


def read_curve(path: Path) -> pd.DataFrame:
    try:
        curve = pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise StageError(f"{display_path(path)}: not valid CSV; {RERUN}") from None
    if not {"step", "val_loss"} <= set(curve.columns):
        raise StageError(f"{display_path(path)}: needs columns step and val_loss; {RERUN}")
    return curve


def collect(ablation: Path, seeds: list[int]) -> tuple[pd.DataFrame, dict, dict]:
    """Rows of every (variant, seed of params.yaml) from the cells' metrics.json files under
    ``ablation``, plus their eval curves and samples keyed by variant."""
    found: dict[tuple[bool, bool, bool, int], dict] = {}
    for path in sorted(ablation.glob("*/metrics.json")):
        m = read_metrics(path)
        found[(m["rope"], m["moe"], m["fgram"], m["seed"])] = m
    extra = sorted({seed for *_, seed in found} - set(seeds))
    if extra:
        print(f"ignoring runs of seeds {extra} on disk: not in params.yaml seeds {seeds}")
    rows, curves, samples, missing = [], {}, {}, []
    for rope, moe, fgram in itertools.product((False, True), repeat=3):
        for seed in seeds:
            m = found.get((rope, moe, fgram, seed))
            if m is None:
                missing.append(f"{variant_name(rope, moe, fgram)} seed {seed}")
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


@dataclass
class Analysis:
    n_seeds: int
    effects: pd.DataFrame  # effect, delta, margin, distinguishable
    ranking: Ranking
    lenth: Lenth | None  # one seed only

    @property
    def method(self) -> str:
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


def analyse(df: pd.DataFrame) -> Analysis:
    """Effects with their margins, and the ranking of the variants, on final_val_loss."""
    seeds = sorted(df.seed.unique())
    per_seed = pd.DataFrame(
        [factorial_effects(df[df.seed == s], SWITCHES, "final_val_loss") for s in seeds]
    )
    losses = df.pivot(index="variant", columns="seed", values="final_val_loss")
    if len(seeds) == 1:
        lt = lenth(per_seed.iloc[0].to_list())
        rows = [(name, d, lt.me) for name, d in per_seed.iloc[0].items()]
        ranking = rank(losses, lt.difference_margin())
    else:
        lt = None
        rows = [(name, *t_interval(per_seed[name].to_list())) for name in per_seed.columns]
        ranking = rank(losses)
    eff = pd.DataFrame(rows, columns=["effect", "delta", "margin"])
    eff["distinguishable"] = eff.delta.abs() > eff.margin
    return Analysis(len(seeds), eff, ranking, lt)


def variant_table(df: pd.DataFrame, ranking: Ranking) -> pd.DataFrame:
    g = df.groupby("variant")
    t = g.agg(
        rope=("rope", "first"), moe=("moe", "first"), fgram=("fgram", "first"),
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


def render_markdown(df: pd.DataFrame, table: pd.DataFrame, a: Analysis, samples: dict) -> str:
    steps, tokens = int(df.steps.iloc[0]), int(df.tokens.iloc[0])
    lines = [
        "# NanoMoE ablation report",
        "",
        f"{len(table)} variants x {a.n_seeds} seed(s), {steps:,} steps and {tokens:,} tokens "
        "each. **Every comparison uses the final val loss**: the mean cross-entropy (nats per "
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
        "| variant | rope | moe | fgram | final val loss"
        + (" (mean ± std)" if a.n_seeds > 1 else "")
        + " | gap to lowest (± 95% margin) | best val loss (step) | train loss | tokens/s "
        "| params total | params active |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        gap = a.ranking.gaps.get(r.variant)
        tied = " (tied)" if r.variant in a.ranking.tied[1:] else ""
        lines.append(
            f"| `{r.variant}` | {'on' if r.rope else 'off'} | {'on' if r.moe else 'off'} | "
            f"{'on' if r.fgram else 'off'} | {_pm(r.final_val_loss, r.final_std)} | "
            f"{'lowest' if gap is None else _pm(*gap) + tied} | "
            f"{r.best_val_loss:.4f} ({r.best_step:,.0f}) | {r.train_loss:.4f} | "
            f"{r.tokens_per_sec:,.0f} | {r.params_total:,} | {r.params_active:,} |"
        )
    lines += [
        "",
        "## Effects on final validation loss (negative = better)",
        "",
        "Main effect: mean loss with the switch on minus off, over the other switches. "
        "Interaction A x B: half the change in A's effect when B is turned on; A x B x C: "
        "the same for the A x B interaction when C is turned on. ± is the 95% margin "
        + ("(Lenth's ME)." if a.lenth else "(t-interval over seeds)."),
        "",
        "| effect | Δ val loss | distinguishable from noise |",
        "|---|---|---|",
    ]
    for r in a.effects.itertuples():
        lines.append(
            f"| {r.effect} | {_pm(r.delta, r.margin)} | {'yes' if r.distinguishable else 'no'} |"
        )
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
    df, curves, samples = collect(layout.require(layout.ablation), params.seeds)
    a = analyse(df)
    table = variant_table(df, a.ranking)
    out = layout.outs("report")
    buf = io.StringIO()
    df.drop(columns="run_id").sort_values(["rope", "moe", "fgram", "seed"]).to_csv(buf, index=False)
    atomic_write_text(out["ablation.csv"], buf.getvalue())
    atomic_write_text(out["report.md"], render_markdown(df, table, a, samples))
    lowest = float(table.final_val_loss.min())
    plot_ablation(curves, a.ranking.order, lowest, out["ablation.png"])
    per_step = (df.tokens / df.steps * df.flops_per_token).groupby(df.variant).first()
    plot_compute(curves, per_step.to_dict(), a.ranking.order, lowest, out["compute.png"])
    summ = summary(df, a.effects, a.ranking, a.lenth)
    atomic_write_text(out["summary.json"], json.dumps(summ, indent=2))
    print(table[["variant", "final_val_loss", "final_std", "best_val_loss"]].to_string(index=False))
    for r in a.effects.itertuples():
        mark = "distinguishable" if r.distinguishable else "within noise"
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
