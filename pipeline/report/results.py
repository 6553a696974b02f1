"""The finished cells on disk: every cell of params.yaml's ``grid:`` x every seed, read from the
metrics.json, curve.csv, sample.txt and run.json its train stage wrote, checked as read.

A cell is known by the switch levels and seed in its metrics.json, not by its folder's name.
Runs of other levels or seeds (an earlier grid's, say) are left out, with one line saying so;
a missing or broken file stops the report with one line naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nanomoe.config import display_path, read_json
from nanomoe.switches import BY_NAME, SWITCHES, Levels, cells, grid_variant, variant_name
from pipeline.report.provenance import RUNTIME, UNRECORDED
from pipeline.stage import StageError

Grid = Mapping[str, Sequence[Any]]  # params.yaml's grid: every switch -> its levels, low first
FIGURES = [
    "final_val_bpb",  # the ranked figure: bits per byte of the validation text
    "best_val_bpb",
    "final_val_loss",  # nats per token: its own tokenizer's unit
    "best_val_loss",
    "best_step",
    "train_loss",
    "tokens_per_sec",
    "wall_s",
    "steps",
    "tokens",
    "bytes_seen",
    "epochs",
    "vocab_size",
    "flops_per_token",
    "params_total",
    "params_active",
]
COLUMNS = ["variant", *BY_NAME, "seed", *FIGURES]
RERUN = "re-run its train stage (dvc repro)"


def read_metrics(path: Path) -> dict:
    """One cell's metrics.json, with every column the report needs and its folder as
    ``_dir``; a broken file stops the report with one line naming it."""
    m = read_json(path, RERUN)
    missing = [c for c in COLUMNS if not isinstance(m, dict) or c not in m]
    if missing:
        raise StageError(f"{display_path(path)}: {missing[0]}: is missing; {RERUN}")
    for s in SWITCHES:
        if not s.has(m[s.name]):
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
    if not {"step", "val_loss", "val_bpb"} <= set(curve.columns):
        bad = "needs columns step, val_loss and val_bpb"
        raise StageError(f"{display_path(path)}: {bad}; {RERUN}")
    return curve


def levels_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The switch levels of a metrics.json (or a table row): its cell without the seed."""
    return {s.name: row[s.name] for s in SWITCHES}


def cell_key(levels: Levels, seed: int) -> tuple:
    return (*levels_of_row(levels).values(), seed)


def ignored_note(ignored: list[dict], kept: list[Levels], seeds: list[int]) -> str:
    """One line saying which runs on disk the report leaves out, and why."""
    in_grid = kept
    variants = sorted({variant_name(m) for m in ignored if levels_of_row(m) not in in_grid})
    other_seeds = sorted({m["seed"] for m in ignored} - set(seeds))
    why = [f"variants {variants}"] * bool(variants) + [f"seeds {other_seeds}"] * bool(other_seeds)
    return (
        f"ignoring {len(ignored)} run(s) on disk outside params.yaml's grid and seeds "
        f"({', '.join(why)})"
    )


def collect(
    ablation: Path, grid: Grid, seeds: list[int], kept: list[Levels] | None = None
) -> tuple[pd.DataFrame, dict, dict]:
    """Rows of every cell of ``grid`` (``kept``: the cells a fraction of it trains) x every
    seed of params.yaml from the cells' metrics.json files under ``ablation``, plus their
    eval curves and samples keyed by variant. Runs of other levels or seeds (an earlier
    grid's) are left out, saying so."""
    kept = cells(grid) if kept is None else kept
    found: dict[tuple, dict] = {}
    for path in sorted(ablation.glob("*/metrics.json")):
        m = read_metrics(path)
        found[cell_key(m, m["seed"])] = m
    wanted = {cell_key(c, seed): (c, seed) for c in kept for seed in seeds}
    ignored = [m for key, m in found.items() if key not in wanted]
    if ignored:
        print(ignored_note(ignored, kept, seeds))
    rows, curves, samples, missing = [], {}, {}, []
    for key, (cell, seed) in wanted.items():
        m = found.get(key)
        if m is None:
            missing.append(f"{grid_variant(cell, grid)} seed {seed}")
            continue
        d = m.pop("_dir")
        # named for the grid's factors (its metrics.json's ``variant`` is the name under
        # the grid the cell trained in, which may have been another)
        m["variant"] = grid_variant(cell, grid)
        run = read_json(d / "run.json", RERUN)
        if not isinstance(run, dict) or not isinstance(run.get("run_id"), str):
            raise StageError(f"{display_path(d / 'run.json')}: names no run_id; {RERUN}")
        runtime = {k: m.get(k, UNRECORDED) for k in RUNTIME}
        rows.append({**{c: m[c] for c in COLUMNS}, **runtime, **run})
        curves.setdefault(m["variant"], []).append(read_curve(d / "curve.csv"))
        samples.setdefault(m["variant"], (d / "sample.txt").read_text(encoding="utf-8"))
    if missing:
        raise StageError(
            f"{ablation.name}/: no metrics.json for {len(missing)} cell(s), e.g. {missing[0]}; "
            "run the train stages first (dvc repro)"
        )
    columns = [*COLUMNS, *RUNTIME, "run_id", "experiment"]
    return pd.DataFrame(rows, columns=columns), curves, samples
