"""What a half would have said: a full design's ablation.csv re-analysed as each of its two
half fractions (the default generator, then its sign flipped), and as their fold-over.

``python -m pipeline.plan --halves experiments/tokenizer/ablation.csv`` prints, for each
contrast a half estimates, the full design's effect, each half's estimate with its alias
chain (each with its verdict at the default margin), and the check that the fold-over
union gives back the full design's effects.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nanomoe.config import display_path
from nanomoe.switches import SWITCHES, grid_variant
from pipeline.design.fraction import FOLDOVER, DesignError, design
from pipeline.params.load import coded
from pipeline.report.analysis import analyse
from pipeline.stage import StageError


def read_full(path: Path) -> tuple[pd.DataFrame, dict[str, list]]:
    """An ablation.csv and the grid its switch columns span (each switch's levels, low first)."""
    if not path.exists():
        raise StageError(f"{display_path(path)}: not found; name an ablation.csv the report wrote")
    df = pd.read_csv(path)
    missing = [s.name for s in SWITCHES if s.name not in df.columns]
    if missing or "final_val_bpb" not in df.columns:
        raise StageError(
            f"{display_path(path)}: {(missing or ['final_val_bpb'])[0]}: column missing; name "
            "an ablation.csv the report wrote"
        )
    grid = {s.name: [v for v in s.levels if v in set(df[s.name])] for s in SWITCHES}
    df["variant"] = [grid_variant(r, grid) for r in df.to_dict("records")]
    return df, grid


def _flip(generator: str) -> str:
    left, right = (x.strip() for x in generator.split("="))
    return f"{left} = {right[1:]}" if right.startswith("-") else f"{left} = -{right}"


def halves_lines(path: Path) -> list[str]:
    """The table of what each half estimates, and the fold-over check, as markdown lines."""
    df, grid = read_full(path)
    factors = [f for f in grid if len(grid[f]) == 2]
    try:
        first = design(factors, "1/2", None)
    except DesignError as err:
        raise StageError(f"{display_path(path)}: {err}") from None
    second = design(factors, "1/2", [_flip(first.generators[0])])
    whole = analyse(df, grid).effects.set_index("effect")
    full = whole.delta
    cols, lines = [], []
    for d in (first, second):
        kept = df[[d.keeps(coded({f: r[f] for f in factors})) for r in df.to_dict("records")]]
        cols.append(analyse(kept, grid, design=d).effects.set_index("effect"))
    lines.append(
        f"| contrast | full 2^{len(factors)} | I = {first.defining_relation()[4:]} | its alias "
        f"chain | I = {second.defining_relation()[4:]} | its alias chain |"
    )
    lines.append("|---|---|---|---|---|---|")
    for name in cols[0].index:
        a, b = cols[0].loc[name], cols[1].loc[name]
        lines.append(
            f"| {name} | {full[name]:+.4f} {whole.verdict[name]} | {a.delta:+.4f} {a.verdict} "
            f"| {a.aliases} | {b.delta:+.4f} {b.verdict} | {b.aliases} |"
        )
    union = analyse(df, grid, design=design(factors, FOLDOVER, None)).effects.set_index("effect")
    mean = (cols[0].delta + cols[1].delta) / 2  # each half's estimate: the effect +- its aliases
    worst = max(
        float((union.delta - full).abs().max()), float((mean - full[mean.index]).abs().max())
    )
    lines += [
        "",
        f"Fold-over (both halves, {len(df)} runs): the {len(union)} effects of the full design; "
        f"each contrast above is the mean of its two half estimates, to within {worst:.0e} bpb.",
    ]
    return lines
