"""python -m pipeline.plan: the seeds that would settle an effect, for the grid and its fractions.

    python -m pipeline.plan --effect 0.01                 # sigma and df from the last report
    python -m pipeline.plan --effect 0.02 --margin 0.01 --sigma 0.0135
    python -m pipeline.plan --halves experiments/tokenizer/ablation.csv   # what a half says

For the current grid's full design and each fraction it allows (1/2 with 3 or more varying
switches, 1/4 with 5 or more, default generators), the seeds needed so that an effect of
``--effect`` bpb is called real with power 0.8, and so that a zero effect is called negligible
at ``--margin`` (default: analysis.equivalence_margin) with power 0.8, at the report's 95%
level (formulas: ``pipeline/design/power.py``); with the cell-runs, cell-steps and hours
that many seeds cost at the last run's mean wall_s per cell (one worker).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nanomoe.config import display_path, read_json
from pipeline.design.fraction import ROMAN, Design, DesignError, design
from pipeline.design.power import MAX_SEEDS, POWER, seeds_to_settle
from pipeline.design.whatif import halves_lines
from pipeline.project import Project
from pipeline.stage import StageError, run_stage


@dataclass(frozen=True)
class Noise:
    sigma: float  # a single run's noise, bpb
    source: str  # where it came from, for the header
    wall_s: float  # mean wall seconds of one cell-run (NaN: unknown)
    steps: float  # steps of one cell-run


def last_run(summary: Path, table: Path, sigma: float | None) -> Noise:
    """sigma from ``--sigma`` or the last report's summary.json; wall_s and steps from its
    ablation.csv (when there is one)."""
    source = "--sigma"
    if sigma is None:
        s = read_json(summary, "run the report first (dvc repro) or pass --sigma")
        if s.get("sigma") is None:
            raise StageError(
                f"{display_path(summary)}: has no sigma (its report gave no verdict); pass "
                "--sigma, or train two or more seeds"
            )
        sigma = float(s["sigma"])
        source = f"{display_path(summary)}: {s['method']}, {s['n_seeds']} seed(s), df {s['df']:g}"
    if not table.exists():
        return Noise(sigma, source, math.nan, math.nan)
    runs = pd.read_csv(table)
    return Noise(sigma, source, float(runs.wall_s.mean()), float(runs.steps.mean()))


def designs(factors: list[str], current: Design) -> list[Design]:
    """The full design, each default fraction the factors allow, and the current one."""
    out = [Design(tuple(factors))]
    for fraction in ("1/2", "1/4"):
        try:
            out.append(design(factors, fraction, None))
        except DesignError:
            pass  # too few factors for it, or no default generators
    if current.fractional and current not in out:
        out.append(current)
    return out


def design_name(d: Design) -> str:
    k = len(d.factors)
    if not d.words or d.foldover:
        return f"full 2^{k}" + (" (fold-over)" if d.foldover else "")
    p = len(d.words)
    return f"2^({k}-{p}) {ROMAN.get(d.resolution, d.resolution)}: {', '.join(d.generators)}"


def cells_of(d: Design) -> int:
    return 2 ** (len(d.factors) - (0 if d.foldover else len(d.words)))


def seeds(n: int | None) -> str:
    return f"> {MAX_SEEDS}" if n is None else str(n)


def shown(value: float | None, spec: str) -> str:
    """A figure, or "-" where it is unknown (no seeds suffice, or no last run's wall_s)."""
    return "-" if value is None or math.isnan(value) else format(value, spec)


def plan_table(
    factors: list[str], current: Design, noise: Noise, effect: float, margin: float
) -> list[str]:
    """The plan as a markdown table, one row per design."""
    rows = [
        f"| design | cells | seeds: {effect:g} real | seeds: 0 negligible (±{margin:g}) "
        "| seeds for both | cell-runs | cell-steps | cell-hours | cell-hours per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in designs(factors, current):
        c = cells_of(d)
        detect, equiv = seeds_to_settle(effect, margin, noise.sigma, c)
        both = None if detect is None or equiv is None else max(detect, equiv)
        runs = None if both is None else c * both
        cells = [design_name(d), str(c), *(seeds(n) for n in (detect, equiv, both))]
        cells += [
            shown(runs, ","),
            shown(runs and runs * noise.steps, ",.0f"),
            shown(runs and runs * noise.wall_s / 3600, ".1f"),
            shown(c * noise.wall_s / 3600, ".2f"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--effect", type=float, help="the effect to detect, bpb (default: --margin)")
    ap.add_argument("--margin", type=float, help="equivalence margin, bpb (default: params.yaml)")
    ap.add_argument("--sigma", type=float, help="a single run's noise, bpb (default: the report's)")
    ap.add_argument(
        "--halves",
        type=Path,
        metavar="CSV",
        help="instead: re-analyse a full design's ablation.csv as its two halves and their "
        "fold-over (pipeline/design/whatif.py)",
    )
    a = ap.parse_args(argv)
    if a.halves:
        print("\n".join(halves_lines(a.halves)))
        return 0
    project = Project.load()
    margin = a.margin if a.margin is not None else project.params.analysis.equivalence_margin
    margin = a.effect if margin is None else margin
    effect = margin if a.effect is None else a.effect
    for flag, value in (("--margin", margin), ("--effect", effect), ("--sigma", a.sigma)):
        if value is not None and not value > 0:
            ap.error(f"{flag}: must be a positive number of bits per byte")
    if effect is None:
        ap.error("--effect: needed, as analysis.equivalence_margin is null")
    layout = project.layout
    out = layout.outs("report")
    noise = last_run(out["summary.json"], out["ablation.csv"], a.sigma)
    factors = list(project.params.design.factors)
    if not factors:
        raise StageError("params.yaml: grid: varies no switch, so there is no effect to plan for")
    print(
        f"sigma = {noise.sigma:.4f} bpb ({noise.source}); power {POWER:g} at the report's "
        f"95% level; {noise.wall_s:.0f} s and {noise.steps:,.0f} steps per cell-run (last run)"
    )
    print("\n".join(plan_table(factors, project.params.design, noise, effect, margin)))
    return 0


if __name__ == "__main__":
    run_stage(main)
