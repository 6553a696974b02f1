"""``--confirm K``: do the tuned settings beat params.yaml's, at the full budget, beyond noise?

Two arms, the study's best settings ("tuned") and params.yaml's values of the same
hyper-parameters ("default"), each train the full model on the ablation's own schedule and
evaluation (``train:`` of params.yaml, full-split val bpb at the end) on K fresh seeds: seeds
the study never trained with. The seeds are interleaved (tuned, default, next seed, ...), so
a confirmation cut short still holds pairs.

Each finished run is stored in the study (user attr ``confirmation``) the moment it ends,
keyed by arm and seed and kept only while its settings still are the arm's: a rerun after
an interruption trains only what is missing. The summary (each arm's mean +- 95% t-interval,
the difference paired by seed with its interval, the verdict) is part of best.json, which
``--report-only`` rebuilds from the storage alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna

from nanomoe.trainer import Trainer
from pipeline.report.stats import t_interval
from pipeline.stage import StageError
from pipeline.tracking import close_dead_run, tracked
from pipeline.train.run_callback import MLflowCallback
from pipeline.tune.ladder import best_trial
from pipeline.tune.objective import TrialContext, full_model
from pipeline.tune.settings import params_text
from pipeline.tune.storage import local_lock

ARMS = ("tuned", "default")
ATTR = "confirmation"


def fresh_seeds(study_seed: int, k: int) -> list[int]:
    """K seeds the study did not train with (it trains every trial with ``study_seed``)."""
    return [study_seed + 1 + i for i in range(k)]


def arm_settings(study: optuna.Study, ctx: TrialContext) -> dict[str, dict[str, Any]]:
    best = best_trial(study.get_trials(deepcopy=False))
    if best is None:
        raise StageError(
            f"study {study.study_name!r} has no trial at the top rung yet; "
            "run --trials N until its finalists finish"
        )
    return {"tuned": dict(best.params), "default": ctx.settings.defaults(ctx.params)}


def train_arm(ctx: TrialContext, run, chosen: dict[str, Any], seed: int) -> dict:
    """The full model at ``chosen``, trained exactly as an ablation cell is."""
    model, train_cfg = full_model(ctx, chosen, seed, {})
    trainer = Trainer(
        model, ctx.train, ctx.val, train_cfg, [MLflowCallback(run)], token_bytes=ctx.token_bytes
    )
    result = trainer.fit()
    final = {"final_val_bpb": result.val_bpb, "best_val_bpb": result.best_val_bpb}
    final |= {"final_val_loss": result.val_loss, "best_val_loss": result.best_val_loss}
    run.log_metrics(final, step=result.steps)
    cost = {"params_active": result.params_active, "flops_per_token": result.flops_per_token}
    return {**final, **cost, "steps": result.steps, "wall_s": result.wall_s}


def confirm(study: optuna.Study, ctx: TrialContext, k: int, lock: Path) -> dict:
    """Train what is missing of the two arms on K fresh seeds; return the summary."""
    with local_lock(lock):  # a second --confirm on this machine waits, then finds it done
        arms = arm_settings(study, ctx)
        seeds = fresh_seeds(ctx.seed, k)
        done = dict(study.user_attrs.get(ATTR, {}))
        for key, old in list(done.items()):
            if "final_val_bpb" not in old:  # a run its process never finished
                close_dead_run(old.get("mlflow_run_id"), "its process died", "KILLED")
                del done[key]
            elif old["params"] != arms[old["arm"]]:  # the study's best has changed since
                del done[key]
        print(f"confirmation: {', '.join(ARMS)} at {ctx.ladder.top} steps on seeds {seeds}")
        for seed in seeds:
            for arm in ARMS:
                key, chosen = f"{arm}/{seed}", arms[arm]
                if done.get(key, {}).get("params") == chosen:
                    print(f"  {arm:7s} seed {seed}: kept {done[key]['final_val_bpb']:.4f}")
                    continue
                run = ctx.runs.start_confirmation(study.study_name, arm, chosen, seed)
                done[key] = {"arm": arm, "seed": seed, "params": chosen, "mlflow_run_id": run.id}
                study.set_user_attr(ATTR, done)
                with tracked(run):
                    done[key].update(train_arm(ctx, run, chosen, seed))
                study.set_user_attr(ATTR, done)
                print(f"  {arm:7s} seed {seed}: {done[key]['final_val_bpb']:.4f}", flush=True)
        study.set_user_attr(ATTR, done)
        info = summarize(study)
        print_confirmation(info)
        return info


def summarize(study: optuna.Study) -> dict | None:
    """Each arm's mean and 95% interval, and the difference paired by seed, over the seeds
    both arms finished."""
    done = [r for r in study.user_attrs.get(ATTR, {}).values() if "final_val_bpb" in r]
    seeds = sorted({r["seed"] for r in done})
    loss = {(r["arm"], r["seed"]): r["final_val_bpb"] for r in done}
    paired = [s for s in seeds if all((arm, s) in loss for arm in ARMS)]
    if not paired:
        return None
    runs = {r["arm"]: r for r in done}  # any run of an arm: its settings and cost
    arms = {}
    for arm in ARMS:
        values = [loss[arm, s] for s in paired]
        mean, half = t_interval(values)
        cost = {k: runs[arm].get(k) for k in ("params_active", "flops_per_token")}
        arms[arm] = {
            "params": runs[arm]["params"],
            **cost,
            "losses": values,
            "mean": mean,
            "ci95": half,
        }
    diffs = [loss["tuned", s] - loss["default", s] for s in paired]
    mean, half = t_interval(diffs)
    return {
        "metric": "final full-split val bpb at train.max_iters (bits per byte)",
        "seeds": paired,
        "arms": arms,
        "difference": {
            "of": "tuned - default, paired by seed",
            "per_seed": diffs,
            "mean": mean,
            "ci95": half,
            "verdict": verdict(mean, half),
        },
    }


def verdict(mean: float, half: float) -> str:
    if math.isnan(half):
        return "one seed: no interval, no verdict"
    if mean + half < 0:
        return "the tuned settings beat the defaults beyond noise (95%)"
    if mean - half > 0:
        return "the defaults beat the tuned settings beyond noise (95%)"
    return "no difference beyond noise (95%)"


def print_confirmation(info: dict | None) -> None:
    if info is None:
        print("confirmation: no seed finished for both arms yet")
        return
    print(f"confirmation on seeds {info['seeds']}, {info['metric']}, mean +- 95% interval:")
    for arm, a in info["arms"].items():
        cost = ""
        if a.get("params_active"):
            cost = f"; {a['params_active'] / 1e6:.2f}M active params, "
            cost += f"{a['flops_per_token'] / 1e6:.1f} MFLOP/token"
        print(f"  {arm:7s} {a['mean']:.4f} +- {a['ci95']:.4f}  ({params_text(a['params'])}{cost})")
    d = info["difference"]
    print(f"  tuned - default, paired by seed: {d['mean']:+.4f} +- {d['ci95']:.4f}: {d['verdict']}")
