"""The ``tune:`` section of params.yaml and the search space it defines.

``tune.space`` says which values each hyper-parameter may take; ``DIMS`` says how each is
sampled and which config it overrides. The section is read through the same reader as every
other (``pipeline/params/sections.py``), and the space is checked by building the configs its
corners would train, so the model's and trainer's own rules apply, named by the ``tune.space``
key.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from nanomoe.config import Config
from nanomoe.switches import full
from pipeline.params import Params
from pipeline.params.sections import read_section
from pipeline.stage import ParamsError
from pipeline.tune.ladder import Ladder


@dataclass(frozen=True)
class Dim:
    kind: str  # "choice": a list of values | "int": [low, high], inclusive | "log": [low, high]
    target: str  # "model": a GPTConfig field | "train": a TrainConfig field
    required: bool


# What each key of tune.space means. Keys left out keep their params.yaml value.
DIMS: dict[str, Dim] = {
    "n_experts": Dim("choice", "model", required=True),
    "fgram_max_n": Dim("int", "model", required=True),
    "top_k": Dim("choice", "model", required=False),
    "learning_rate": Dim("log", "train", required=False),
}
# Keys of the 300-step tuner, replaced by the ladder: each gets a pointed error.
REPLACED = {
    "max_iters": "the top rung is train.max_iters; list the lower rungs in tune.rungs",
    "eval_interval": "trials eval at every rung of tune.rungs",
    "pruner": "successive halving over tune.rungs replaced it",
    "percentile": "tune.reduction_factor sets the share each rung keeps",
    "n_startup_trials": "successive halving over tune.rungs replaced it",
    "n_warmup_steps": "the first of tune.rungs must lie past train.warmup_iters",
}


def tuned_levels(params: Params) -> dict:
    """The model the tuner tunes: every switch at its high level (RoPE, MoE, F-grams), on the
    tokenizer the grid trains last (char by default, bpe in a [char, bpe] grid)."""
    return {**full(), "tokenizer": params.grid["tokenizer"][-1]}


def _fail(key: str, rule: str) -> None:
    raise ParamsError(f"params.yaml: tune.{key}: {rule}")


@dataclass(frozen=True)
class TuneSettings(Config):
    space: dict[str, list]  # key of DIMS -> its choices, or [low, high]
    rungs: list[int]  # the lower rungs of the ladder (steps); the top is train.max_iters
    study_name: str = "nanomoe-tune"
    reduction_factor: int = 3  # eta: a rung keeps the best 1/eta of the trials that reach it
    finalists: int = 2  # how many trials train the top rung: the cap on full-budget trials
    eval_iters: int = 5  # batches per rung eval; every trial evals the same fixed batches
    heartbeat_interval: int = 20  # database storages: seconds between a trial's heartbeats
    heartbeat_grace: int = 120  # ... and a trial silent this long is failed by another worker
    reap_local_dead: bool = True  # fail a trial whose process on this host is gone, at once

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.study_name.strip():
            raise ValueError("study_name: must be a non-empty string")
        if not self.rungs or any(r < 1 for r in self.rungs):
            raise ValueError(f"rungs: must be a non-empty list of steps >= 1, got {self.rungs}")
        if any(b <= a for a, b in zip(self.rungs, self.rungs[1:], strict=False)):
            raise ValueError(f"rungs: must increase strictly, got {self.rungs}")
        if self.reduction_factor < 2:
            raise ValueError("reduction_factor: must be an integer >= 2")
        if self.finalists < 1:
            raise ValueError("finalists: must be an integer >= 1")
        if self.eval_iters < 1:
            raise ValueError("eval_iters: must be an integer >= 1")
        if self.heartbeat_interval < 1:
            raise ValueError("heartbeat_interval: must be >= 1 second; e.g. 20")
        if self.heartbeat_grace <= self.heartbeat_interval:
            raise ValueError(
                f"heartbeat_grace: {self.heartbeat_grace}s must exceed tune.heartbeat_interval="
                f"{self.heartbeat_interval}s, or live trials are failed between two heartbeats; "
                "raise it (a few intervals, e.g. 6x)"
            )
        object.__setattr__(self, "space", _check_space_shape(self.space))

    def suggest(self, trial) -> dict[str, Any]:
        """Sample one point of the space through an Optuna trial."""
        chosen: dict[str, Any] = {}
        for key, values in self.space.items():
            kind = DIMS[key].kind
            if kind == "choice":
                chosen[key] = trial.suggest_categorical(key, values)
            elif kind == "int":
                chosen[key] = trial.suggest_int(key, values[0], values[1])
            else:
                chosen[key] = trial.suggest_float(key, values[0], values[1], log=True)
        return chosen

    @staticmethod
    def overrides(chosen: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split a sampled point into (GPTConfig overrides, TrainConfig overrides)."""
        model = {k: v for k, v in chosen.items() if DIMS[k].target == "model"}
        train = {k: v for k, v in chosen.items() if DIMS[k].target == "train"}
        return model, train

    def defaults(self, params: Params) -> dict[str, Any]:
        """params.yaml's own value of every tuned hyper-parameter: the untuned arm."""
        model, train = params.model.to_dict(), params.train.to_dict()
        return {k: (model if DIMS[k].target == "model" else train)[k] for k in self.space}

    def ladder(self, params: Params) -> Ladder:
        """The rungs up to train.max_iters, checked against the training schedule."""
        top, warmup = params.train.max_iters, params.train.warmup_iters
        if self.rungs[0] <= warmup:
            _fail(
                "rungs",
                f"first rung {self.rungs[0]} lies inside the learning-rate warmup "
                f"(train.warmup_iters={warmup}), where rankings mean little; start above {warmup}",
            )
        if self.rungs[-1] >= top:
            _fail(
                "rungs",
                f"last rung {self.rungs[-1]} must lie below the top rung "
                f"train.max_iters={top}; drop it or raise train.max_iters",
            )
        return Ladder((*self.rungs, top), self.reduction_factor, self.finalists, self.eval_iters)


def params_text(params: dict[str, Any]) -> str:
    """``n_experts=4 learning_rate=0.00246``: a point of the space, for one line of output."""
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_space_shape(space: dict[str, list]) -> dict[str, list]:
    """The form of each dimension (choices, or a [low, high] range); what values make sense
    is left to the configs they build (see ``check_space``)."""
    if not space:
        _fail("space", "must be a mapping of hyper-parameters to their values")
    unknown = sorted(set(space) - set(DIMS))
    if unknown:
        _fail(f"space.{unknown[0]}", f"unknown hyper-parameter; known: {list(DIMS)}")
    out: dict[str, list] = {}
    for key, dim in DIMS.items():  # a fixed order, so the sampler sees the same space every run
        where, values = f"space.{key}", space.get(key)
        if values is None:
            if dim.required:
                _fail(where, "is missing")
            continue
        if not isinstance(values, list) or not values:
            _fail(where, "must be a non-empty list")
        if dim.kind == "choice":
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                _fail(where, f"choices must be integers, got {values!r}")
            if len(set(values)) != len(values):
                _fail(where, f"has repeated choices {values!r}")
        elif len(values) != 2 or not all(_number(v) for v in values):
            _fail(where, f"must be a range [low, high] of two numbers, got {values!r}")
        elif values[0] > values[1]:
            _fail(where, f"low {values[0]} is above high {values[1]}")
        if dim.kind == "int" and not all(isinstance(v, int) for v in values):
            _fail(where, f"must be a range of two integers, got {values!r}")
        out[key] = [float(v) for v in values] if dim.kind == "log" else list(values)
    return out


def check_space(settings: TuneSettings, ladder: Ladder, params: Params) -> None:
    """Build the model and train config of every corner of the space (each choice, each
    range's ends), so that any rule of theirs fails now, naming the ``tune.space`` key."""
    mined = params.mining.max_n
    high = settings.space["fgram_max_n"][1]
    if high > mined:
        _fail(
            "space.fgram_max_n",
            f"high {high} is above fgram.mine_max_n={mined}; mine longer F-grams or lower it",
        )
    keys = {k: f"tune.space.{k}" for k in settings.space}
    budget_keys = {"eval_iters": "tune.eval_iters", "eval_interval": "tune.rungs"}
    corners = [[(k, v) for v in values] for k, values in settings.space.items()]
    for point in itertools.product(*corners):
        chosen = dict(point)
        model, train = settings.overrides(chosen)
        try:
            params.model_config(2, tuned_levels(params), overrides=model, keys=keys)
            params.train_config(
                params.seeds[0], {**ladder.budget(), **train}, {**keys, **budget_keys}
            )
        except ParamsError as err:
            where = ", ".join(f"{k}={v}" for k, v in chosen.items())
            raise ParamsError(f"{err} (with tune.space {where})") from None


def load_tune_settings(params: Params) -> tuple[TuneSettings, Ladder]:
    """``tune:`` of params.yaml and its ladder, checked; a bad value raises ParamsError
    naming its key."""
    try:
        settings = read_section(params.tune, TuneSettings, "tune")
    except ParamsError as err:
        old = re.search(r"tune: unknown key (\w+)", str(err))
        if old and old[1] in REPLACED:
            _fail(old[1], f"no longer used ({REPLACED[old[1]]}); remove it")
        raise
    ladder = settings.ladder(params)
    check_space(settings, ladder, params)
    return settings, ladder
