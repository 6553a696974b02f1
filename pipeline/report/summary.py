"""The whole ablation as one record: summary.json (DVC metrics) and one MLflow run.

The summary run goes to the cells' experiment, tagged ``kind=ablation`` (the cells are
``kind=cell``), so ``mlflow ui`` can filter either out and compare two ``dvc exp run``s effect
by effect. Cell run ids live here and in run.json, never in metrics.json.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from nanomoe.switches import BY_NAME, baseline, config_fields, grid_variant
from pipeline.params import Params
from pipeline.report.analysis import METRIC, Analysis
from pipeline.report.provenance import mixed, runtime_values
from pipeline.tracking import Client, Run, flatten, git_commit, tracked
from pipeline.tracking.registry import adopt_cells, aliases_for, register_variants


def baseline_variant(grid: Mapping[str, Sequence[Any]]) -> str:
    """The grid's all-low cell (each switch at the lowest level the grid trains): the model
    every effect starts from, nanoGPT's when the grid gives every switch both levels."""
    return grid_variant({name: levels[0] for name, levels in grid.items()}, grid)


def summary(
    df: pd.DataFrame, a: Analysis, grid: Mapping[str, Sequence[Any]], unresolved: list[str]
) -> dict:
    """summary.json, the DVC metrics: the verdict and every effect with its margin.
    ``metric`` names the judged figure (``final_val_bpb``); ``dense_final_val_bpb`` is the
    baseline variant's (the grid's all-low cell);
    ``runtime`` what the cells trained under, ``unresolved_runs`` the cell runs the MLflow
    store lacks (see provenance.py)."""
    losses = df.groupby("variant")[METRIC].mean()
    ranking, base = a.ranking, baseline_variant(grid)
    noise = a.noise
    out = {
        "metric": METRIC,  # bits per UTF-8 byte of the validation text
        "method": a.kind,  # "replicated factorial", "lenth" or "none" (too little to judge)
        "n_seeds": int(df.seed.nunique()),
        "df": None if noise is None else noise.df,  # pooled: an integer; Lenth's m/3: not
        "sigma": None if noise is None else float(noise.sigma),  # a single run's noise
        "simultaneous_margin": None if noise is None else float(noise.sme),
        "best_rule": _best_rule(a),
        "best_margin": None if math.isnan(a.best_margin) else float(a.best_margin),
        "factors": a.factors,
        "best_variant": ranking.best,  # null when tied or no verdict
        "lowest_variant": ranking.order[0],
        "tied_with_lowest": ranking.tied,
        "lowest_final_val_bpb": float(losses[ranking.order[0]]),
        "baseline_variant": base,
        # null when a fraction does not train the baseline cell
        "dense_final_val_bpb": float(losses[base]) if base in losses else None,
        "equivalence_margin": a.equivalence_margin,  # bpb: analysis.equivalence_margin
        "equivalent_to_best": a.equivalent or [],  # within the margin of the best (MCB)
        "design": design_record(a),
        "effects": {
            r.effect: {
                "delta": float(r.delta),
                "margin": None if math.isnan(r.margin) else float(r.margin),  # NaN: not JSON
                "distinguishable": bool(r.distinguishable),
                # the 90% interval's half-width, TOST's (null: one seed or no verdict)
                "half90": None if math.isnan(r.half90) else float(r.half90),
                "verdict": r.verdict,  # real, negligible, undetermined; null: no verdict
                "below_margin": bool(r.below_margin),  # its 90% interval inside the margin
                **({"aliases": r.aliases} if r.aliases else {}),  # what a fraction estimates
            }
            for r in a.effects.itertuples()
        },
    }
    out["runtime"] = runtime_values(df)
    out["mixed_runtime"] = bool(mixed(df))
    out["unresolved_runs"] = unresolved
    if a.lenth:
        out["lenth"] = {"pse": a.lenth.pse, "me": a.lenth.me, "sme": a.lenth.sme}
    if a.spread:
        c = a.spread
        out["spread"] = {"cochran_c": c.c, "critical": c.critical, "by_variant": c.spread}
    return out


def design_record(a: Analysis) -> dict:
    """The design in summary.json: its fraction, generators, defining relation, resolution."""
    d = a.design
    if d is None:
        return {"fraction": "1"}
    return {
        "fraction": d.fraction,
        "generators": list(d.generators),
        "defining_relation": d.defining_relation(),
        "resolution": d.resolution,
    }


def _best_rule(a: Analysis) -> str | None:
    if not a.judged:
        return None
    return "hsu mcb" if a.n_seeds > 1 else "per-comparison"


def log_summary_run(df: pd.DataFrame, params: Params, summ: dict, files: list[Path]) -> str:
    """One MLflow run for the whole ablation (tag kind=ablation, beside the kind=cell runs):
    each effect and its margin as metrics, the report and plots as artifacts, the cells' run
    ids as a tag and in cells.json. Returns its run id."""
    no_best = "no verdict" if summ["method"] == "none" else "tied"
    tags = {
        "kind": "ablation",
        "git_commit": git_commit(),
        "n_seeds": summ["n_seeds"],
        "method": summ["method"],
        "best_variant": summ["best_variant"] or no_best,
        "cell_run_ids": ",".join(df.run_id.dropna()),  # the runs that trained the cells
        "unresolved_run_ids": ",".join(summ["unresolved_runs"]) or "none",
        "mixed_runtime": summ["mixed_runtime"],
        "best_rule": summ["best_rule"] or "none",
        "design": summ["design"]["fraction"],
        "equivalent_to_best": ",".join(summ["equivalent_to_best"]) or "none",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    per_cell = {"vocab_size", *config_fields(baseline())}  # set by the data and the cell
    model = {k: v for k, v in params.model.to_dict().items() if k not in per_cell}
    grid = {
        f"grid.{name}": "[" + ", ".join(BY_NAME[name].spell(v) for v in levels) + "]"
        for name, levels in params.grid.items()
    }
    train = {k: v for k, v in params.train.to_dict().items() if k != "seed"}
    metrics = {
        "lowest_final_val_bpb": summ["lowest_final_val_bpb"],
        "dense_final_val_bpb": summ["dense_final_val_bpb"],
        "df": summ["df"],
        "sigma": summ["sigma"],
        "simultaneous_margin": summ["simultaneous_margin"],
        "best_margin": summ["best_margin"],
    }
    for name, e in summ["effects"].items():
        key = name.replace(" (main)", "").replace(" ", "_")
        tags[f"verdict.{key}"] = e["verdict"] or "no verdict"
        metrics.update(
            {
                f"effect.{key}": e["delta"],
                f"margin.{key}": e["margin"],
                f"distinguishable.{key}": float(e["distinguishable"]),
                f"half90.{key}": e["half90"],
            }
        )
    metrics = {k: v for k, v in metrics.items() if v is not None}  # no verdict: no margins
    for key, value in summ.get("lenth", {}).items():
        metrics[f"lenth_{key}"] = value
    cells = {f"{r.variant} seed {r.seed}": r.run_id for r in df.itertuples()}
    run = Run.start(df.experiment.iloc[0], f"ablation, {summ['n_seeds']} seed(s)", tags)
    with tracked(run):
        analysis = flatten(params.analysis.to_dict(), "analysis.")
        run.log_params(
            {
                "seeds": params.seeds,
                **grid,
                **analysis,
                "grid.fraction": summ["design"]["fraction"],
                **flatten(model, "model."),
                **flatten(train, "train."),
            }
        )
        run.log_metrics(metrics, step=0)
        run.log_artifacts(files)
        run.log_text(json.dumps(cells, indent=2), "cells.json")
    return run.id


def file_ablation(summary_id: str, df: pd.DataFrame, seed: int, summ: dict) -> str:
    """The summary run made the parent of the cell runs it judged, and each variant's model
    at ``seed`` registered under the experiment's name with the verdict's alias
    (``pipeline/tracking/registry.py``); one line saying what was done."""
    client, experiment = Client(), df.experiment.iloc[0]
    cells = df[df.run_id.notna() & ~df.run_id.isin(summ["unresolved_runs"])]
    adopted = adopt_cells(client, summary_id, list(cells.run_id))
    firsts = cells[cells.seed == seed]
    judged = summ["method"] != "none"
    best = summ["best_variant"] if judged else None
    tied = summ["tied_with_lowest"] if judged else []
    runs = dict(zip(firsts.variant, firsts.run_id, strict=True))
    versions = register_variants(client, experiment, runs, best, tied)
    wanted = aliases_for(best, tied)
    alias = f"best: {best} (v{versions[best]})" if best in versions else "no best alias"
    if "best" not in wanted and wanted:
        alias = f"tied-best-1..{len(wanted)}: {', '.join(wanted.values())}"
    return (
        f"parent of {adopted} new cell run(s) of {len(cells)}; registered model {experiment!r}: "
        f"{len(versions)} variant(s) at seed {seed}, {alias}"
    )
