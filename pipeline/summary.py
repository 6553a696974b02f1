"""The whole ablation as one record: summary.json (DVC metrics) and one MLflow run.

The summary run goes to the cells' experiment, tagged ``kind=ablation`` (the cells are
``kind=cell``), so ``mlflow ui`` can filter either out and compare two ``dvc exp run``s effect
by effect. Cell run ids live here and in run.json, never in metrics.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from nanomoe.config import variant_name
from pipeline.params import Params
from pipeline.stats import Lenth, Ranking
from pipeline.tracking import Run, flatten, git_commit, tracked


def summary(df: pd.DataFrame, effects: pd.DataFrame, ranking: Ranking, lt: Lenth | None) -> dict:
    """summary.json, the DVC metrics: the verdict and every effect with its margin."""
    losses = df.groupby("variant").final_val_loss.mean()
    out = {
        "method": "lenth" if lt else "t-interval over seeds",
        "n_seeds": int(df.seed.nunique()),
        "best_variant": ranking.best,  # null when tied
        "lowest_variant": ranking.order[0],
        "tied_with_lowest": ranking.tied,
        "lowest_final_val_loss": float(losses[ranking.order[0]]),
        "dense_final_val_loss": float(losses[variant_name(False, False, False)]),
        "effects": {
            r.effect: {
                "delta": float(r.delta),
                "margin": float(r.margin),
                "distinguishable": bool(r.distinguishable),
            }
            for r in effects.itertuples()
        },
    }
    if lt:
        out["lenth"] = {"pse": lt.pse, "me": lt.me, "sme": lt.sme}
    return out


def log_summary_run(df: pd.DataFrame, params: Params, summ: dict, files: list[Path]) -> str:
    """One MLflow run for the whole ablation (tag kind=ablation, beside the kind=cell runs):
    each effect and its margin as metrics, the report and plots as artifacts, the cells' run
    ids as a tag and in cells.json. Returns its run id."""
    tags = {"kind": "ablation", "git_commit": git_commit(), "n_seeds": summ["n_seeds"],
            "method": summ["method"], "best_variant": summ["best_variant"] or "tied",
            "cell_run_ids": ",".join(df.run_id.dropna())}  # fmt: skip
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    grid = ("vocab_size", "rope", "moe", "fgram")
    model = {k: v for k, v in params.model.to_dict().items() if k not in grid}
    train = {k: v for k, v in params.train.to_dict().items() if k != "seed"}
    metrics = {"lowest_final_val_loss": summ["lowest_final_val_loss"],
               "dense_final_val_loss": summ["dense_final_val_loss"]}  # fmt: skip
    for name, e in summ["effects"].items():
        key = name.replace(" (main)", "").replace(" ", "_")
        metrics.update({f"effect.{key}": e["delta"], f"margin.{key}": e["margin"],
                        f"distinguishable.{key}": float(e["distinguishable"])})  # fmt: skip
    for key, value in summ.get("lenth", {}).items():
        metrics[f"lenth_{key}"] = value
    cells = {f"{r.variant} seed {r.seed}": r.run_id for r in df.itertuples()}
    run = Run.start(df.experiment.iloc[0], f"ablation, {summ['n_seeds']} seed(s)", tags)
    with tracked(run):
        run.log_params({"seeds": params.seeds, **flatten(model, "model."),
                        **flatten(train, "train.")})  # fmt: skip
        run.log_metrics(metrics, step=0)
        run.log_artifacts(files)
        run.log_text(json.dumps(cells, indent=2), "cells.json")
    return run.id
