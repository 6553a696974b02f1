"""One trial: sample a point of the space, train the full model there, report to Optuna.

The objective calls the same ``Trainer`` the train stage uses, with the trial's overrides of
the params.yaml configs on the ablation's schedule, and returns the full-split validation
bits per byte (the report's figure). Every eval reports its val bpb to the ladder's pruner
(ladder.py), which stops search trials at its rungs; a value that is not finite prunes the
trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nanomoe.config import TrainConfig
from nanomoe.fgram import load_fgrams
from nanomoe.model import GPT
from nanomoe.moe import MoEStats
from nanomoe.trainer import Callback, NonFiniteLossError, Trainer, set_seed
from pipeline.params import Params
from pipeline.train.run_callback import MLflowCallback
from pipeline.tune.ladder import Ladder
from pipeline.tune.runs import StudyRuns
from pipeline.tune.settings import TuneSettings, tuned_levels


@dataclass
class TrialContext:
    """What every trial of this worker shares."""

    params: Params
    settings: TuneSettings
    ladder: Ladder
    seed: int
    vocab_size: int
    tokenizer: str  # its level of the tokenizer switch
    token_bytes: np.ndarray  # raw bytes per token id, for bits per byte
    train: np.ndarray  # memory-mapped splits
    val: np.ndarray
    fgrams_path: Path
    runs: StudyRuns
    lock_path: Path  # the local lock that serializes claiming


class PruneOnEval(Callback):
    """Report each eval's val bpb to the trial; prune when the pruner says so, or when it is
    not finite."""

    def __init__(self, trial: optuna.Trial, last_lower_rung: int | None = None) -> None:
        self.trial, self.last_lower_rung = trial, last_lower_rung

    def on_eval(self, step: int, metrics: dict[str, float], moe: MoEStats | None) -> None:
        bpb = metrics["val_bpb"]
        if not math.isfinite(bpb):
            self.trial.set_user_attr("nonfinite", True)
            raise optuna.TrialPruned(f"val bpb {bpb} at step {step}")
        self.trial.report(bpb, step)
        if self.trial.should_prune():
            why = "reached the last lower rung" if step == self.last_lower_rung else "pruned"
            raise optuna.TrialPruned(f"{why} at step {step} (val bpb {bpb:.4f})")


def full_model(
    ctx: TrialContext, chosen: dict[str, Any], seed: int, train: dict[str, Any]
) -> tuple[GPT, TrainConfig]:
    """The full model (RoPE, MoE, F-grams) at one point of the space, seeded, and its
    TrainConfig: params.yaml's, with ``train`` and the point's overrides."""
    model_kw, train_kw = ctx.settings.overrides(chosen)
    config = ctx.params.model_config(ctx.vocab_size, tuned_levels(ctx.params), overrides=model_kw)
    train_cfg = ctx.params.train_config(seed, overrides={**train, **train_kw})
    fgrams = load_fgrams(ctx.fgrams_path, max_n=config.fgram_max_n)
    set_seed(seed)
    return GPT(config, fgrams=fgrams), train_cfg


def objective(trial: optuna.Trial, chosen: dict[str, Any], run, ctx: TrialContext) -> float:
    """Train the full model at one point of the space; return its full-split val bpb."""
    budget = {**ctx.ladder.budget(), "progress": False}
    model, train_cfg = full_model(ctx, chosen, ctx.seed, budget)
    run.log_params({"n_fgrams": len(model.fgram_ids)})
    callbacks = [MLflowCallback(run), PruneOnEval(trial, ctx.ladder.last_lower)]
    trainer = Trainer(
        model, ctx.train, ctx.val, train_cfg, callbacks=callbacks, token_bytes=ctx.token_bytes
    )
    try:
        return trainer.fit().val_bpb
    except NonFiniteLossError as err:
        trial.set_user_attr("nonfinite", True)
        raise optuna.TrialPruned(str(err)) from None
    finally:
        trial.set_user_attr("steps", trainer.step)
        trial.set_user_attr("max_iters", train_cfg.max_iters)


def run_trial(study: optuna.Study, trial: optuna.Trial, ctx: TrialContext) -> FrozenTrial:
    """Sample, train, tell Optuna and MLflow how it ended; return the finished trial."""
    value, state, note, run = None, TrialState.FAIL, "", None
    try:
        chosen = ctx.settings.suggest(trial)
        run = ctx.runs.start_trial(trial, chosen, ctx.seed)
        value = objective(trial, chosen, run, ctx)
        state = TrialState.COMPLETE
    except optuna.TrialPruned as err:
        state, note = TrialState.PRUNED, str(err)
    except BaseException as err:  # a crash or Ctrl-C: FAIL, and re-raise
        note = f"{type(err).__name__}: {err}"
        raise
    finally:
        if note:
            trial.set_user_attr("note", note)
        frozen = study.tell(trial, value, state=state)
        if run is not None:
            ctx.runs.end_trial(run, frozen)
    return frozen
