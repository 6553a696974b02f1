"""Stage ``report``: the ablation table, effects of each switch, curves and samples.

Reads the metrics.json, curve.csv and sample.txt that the train stages wrote under
experiments/ablation/ (every variant x every seed of params.yaml; a cell is known by the
switches and seed in its metrics.json) and writes experiments/ablation.csv, report.md,
ablation.png and summary.json (the DVC metrics).

Effects use the 2^3 factorial contrasts: with each switch coded -1 (off) / +1 (on), an
effect is mean(val_loss where the contrast is +1) - mean(val_loss where it is -1). For a
main effect that is "on minus off"; for a two-way interaction A x B it is how much A's effect
changes when B is on, halved. Negative means lower loss. With >= 2 seeds, each effect is
computed per seed and reported with a 95% t-interval over seeds.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
from pathlib import Path

import pandas as pd

from nanomoe.atomic import atomic_write_text
from nanomoe.config import display_path, read_json, variant_name
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.plots import new_figure, save_figure
from pipeline.stage import StageError, run_stage

SWITCHES = ("rope", "moe", "fgram")
COLUMNS = [
    "variant",
    "rope",
    "moe",
    "fgram",
    "seed",
    "val_loss",
    "train_loss",
    "tokens_per_sec",
    "wall_s",
    "params_total",
    "params_active",
]
# Two-sided 95% Student-t quantiles by degrees of freedom (no scipy needed).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def t95(df: int) -> float:
    return _T95[max(k for k in _T95 if k <= df)] if df < 60 else 1.96


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
            rows.append({c: m[c] for c in COLUMNS})
            curves.setdefault(m["variant"], []).append(read_curve(d / "curve.csv"))
            samples.setdefault(m["variant"], (d / "sample.txt").read_text(encoding="utf-8"))
    if missing:
        raise StageError(
            f"{ablation.name}/: no metrics.json for {len(missing)} cell(s), e.g. {missing[0]}; "
            "run the train stages first (dvc repro)"
        )
    return pd.DataFrame(rows, columns=COLUMNS), curves, samples


def effects(df: pd.DataFrame) -> pd.DataFrame:
    """Main effects and two-way interactions, mean and 95% interval over seeds."""
    coded = df.assign(**{s: df[s].astype(int) * 2 - 1 for s in SWITCHES})
    contrasts = {f"{s} (main)": coded[s] for s in SWITCHES}
    for a, b in itertools.combinations(SWITCHES, 2):
        contrasts[f"{a} x {b}"] = coded[a] * coded[b]
    out = []
    for name, sign in contrasts.items():
        per_seed = (
            df.assign(sign=sign)
            .groupby("seed")
            .apply(
                lambda g: (
                    g.loc[g.sign > 0, "val_loss"].mean() - g.loc[g.sign < 0, "val_loss"].mean()
                ),
                include_groups=False,
            )
        )
        n = len(per_seed)
        half = t95(n - 1) * per_seed.std(ddof=1) / math.sqrt(n) if n >= 2 else float("nan")
        out.append({"effect": name, "delta_val_loss": per_seed.mean(), "ci95": half, "n_seeds": n})
    return pd.DataFrame(out)


def variant_table(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["variant", "rope", "moe", "fgram"], as_index=False)
    t = g.agg(
        val_loss=("val_loss", "mean"),
        val_std=("val_loss", "std"),
        seeds=("seed", "count"),
        train_loss=("train_loss", "mean"),
        tokens_per_sec=("tokens_per_sec", "mean"),
        params_total=("params_total", "first"),
        params_active=("params_active", "first"),
    )
    return t.sort_values("val_loss").reset_index(drop=True)


def _fmt_pm(mean: float, spread: float) -> str:
    return f"{mean:.4f}" if math.isnan(spread) else f"{mean:.4f} ± {spread:.4f}"


def render_markdown(df: pd.DataFrame, table: pd.DataFrame, eff: pd.DataFrame, samples: dict) -> str:
    n_seeds = df.seed.nunique()
    best = table.iloc[0]
    lines = [
        "# NanoMoE ablation report",
        "",
        f"{len(table)} variants x {n_seeds} seed(s). Validation loss is the mean cross-entropy "
        "(nats per character) over the whole validation split, with no auxiliary loss in it.",
        "",
        f"**Best variant: `{best.variant}`**, val loss {_fmt_pm(best.val_loss, best.val_std)}.",
        "",
        "## Variants, sorted by validation loss",
        "",
        "| variant | rope | moe | fgram | val loss"
        + (" (mean ± std)" if n_seeds > 1 else "")
        + " | train loss | tokens/s | params total | params active |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| `{r.variant}` | {'on' if r.rope else 'off'} | {'on' if r.moe else 'off'} | "
            f"{'on' if r.fgram else 'off'} | {_fmt_pm(r.val_loss, r.val_std)} | "
            f"{r.train_loss:.4f} | {r.tokens_per_sec:,.0f} | {r.params_total:,} | "
            f"{r.params_active:,} |"
        )
    lines += [
        "",
        "## Effects on validation loss (negative = better)",
        "",
        "Main effect: mean val loss with the switch on minus off, over the other switches. "
        "Interaction A x B: half the change in A's effect when B is turned on."
        + (" ± is a 95% t-interval over seeds." if n_seeds > 1 else " One seed: no interval."),
        "",
        "| effect | Δ val loss |",
        "|---|---|",
    ]
    for r in eff.itertuples():
        lines.append(f"| {r.effect} | {_fmt_pm(r.delta_val_loss, r.ci95)} |")
    lines += ["", "## Samples, one per variant", "", "| variant | sample |", "|---|---|"]
    for variant in table.variant:
        text = samples[variant][:240].replace("|", "\\|").replace("\n", " ↵ ")
        lines.append(f"| `{variant}` | {text} |")
    lines += ["", "![validation loss curves](ablation.png)", ""]
    return "\n".join(lines)


def plot(curves: dict, table: pd.DataFrame, path: Path) -> None:
    fig, ax = new_figure(8, 5)
    for variant in table.variant:  # legend in rank order
        mean = pd.concat(curves[variant]).groupby("step", as_index=False).val_loss.mean()
        ax.plot(
            mean.step, mean.val_loss, label=variant, linestyle="-" if "+moe" in variant else "--"
        )
    ax.set(xlabel="step", ylabel="val loss (nats/char)", title="NanoMoE ablation: validation loss")
    lo = table.val_loss.min()
    ax.set_ylim(lo - 0.1, lo + 1.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m pipeline.report", description=__doc__.split("\n")[0]
    ).parse_args(argv)
    layout = Layout.load()
    params = load_params(layout.root / "params.yaml")
    df, curves, samples = collect(layout.require(layout.ablation), params.seeds)
    table = variant_table(df)
    eff = effects(df)
    out = layout.outs("report")
    buf = io.StringIO()
    df.sort_values(["rope", "moe", "fgram", "seed"]).to_csv(buf, index=False)
    atomic_write_text(out["ablation.csv"], buf.getvalue())
    atomic_write_text(out["report.md"], render_markdown(df, table, eff, samples))
    plot(curves, table, out["ablation.png"])
    summary = {
        "best_variant": table.variant[0],
        "best_val_loss": float(table.val_loss[0]),
        "dense_val_loss": float(
            table.set_index("variant").val_loss[variant_name(False, False, False)]
        ),
        "effects": {r.effect: float(r.delta_val_loss) for r in eff.itertuples()},
    }
    atomic_write_text(out["summary.json"], json.dumps(summary, indent=2))
    print(table[["variant", "val_loss", "val_std", "tokens_per_sec"]].to_string(index=False))
    print(f"best: {summary['best_variant']} -> {layout.relative(out['report.md'])}")
    return 0


if __name__ == "__main__":
    run_stage(main)
