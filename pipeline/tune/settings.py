"""The ``tune:`` section of params.yaml and the search space it defines.

``tune.space`` says which values each hyper-parameter may take; ``DIMS`` says how each is
sampled and which config it overrides. The section is read through the same reader as every
other (``Params.read``), and the space is checked by building the configs its corners would
train, so the model's and trainer's own rules apply, named by the ``tune.space`` key.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from nanomoe.config import Config
from pipeline.params import Params
from pipeline.stage import ParamsError


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
PRUNERS = ("median", "percentile", "hyperband", "none")


def _fail(key: str, rule: str) -> None:
    raise ParamsError(f"params.yaml: tune.{key}: {rule}")


@dataclass(frozen=True)
class TuneSettings(Config):
    space: dict[str, list]  # key of DIMS -> its choices, or [low, high]
    study_name: str = "nanomoe-tune"
    max_iters: int = 300
    eval_interval: int = 50
    eval_iters: int = 5
    pruner: str = "median"
    percentile: float = 50.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.study_name.strip():
            raise ValueError("study_name: must be a non-empty string")
        for name in ("max_iters", "eval_interval", "eval_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be an integer >= 1")
        for name in ("n_startup_trials", "n_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be an integer >= 0")
        if self.eval_interval > self.max_iters:
            raise ValueError(f"eval_interval: must be <= tune.max_iters={self.max_iters}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner: must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if not 0 < self.percentile < 100:
            raise ValueError(f"percentile: must be a number in (0, 100), got {self.percentile}")
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

    def budget(self) -> dict[str, int]:
        """The TrainConfig overrides that make every trial short."""
        return {
            "max_iters": self.max_iters,
            "eval_interval": self.eval_interval,
            "eval_iters": self.eval_iters,
        }

    def make_pruner(self):
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner(self.n_startup_trials, self.n_warmup_steps)
        if self.pruner == "percentile":
            return optuna.pruners.PercentilePruner(
                self.percentile, self.n_startup_trials, self.n_warmup_steps
            )
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=max(self.n_warmup_steps, self.eval_interval),
                max_resource=self.max_iters,
                reduction_factor=3,
            )
        return optuna.pruners.NopPruner()

    def describe_pruner(self) -> str:
        if self.pruner in ("median", "percentile"):
            pct = f"{self.percentile:g}, " if self.pruner == "percentile" else ""
            return (
                f"{self.pruner}({pct}n_startup_trials={self.n_startup_trials}, "
                f"n_warmup_steps={self.n_warmup_steps})"
            )
        if self.pruner == "hyperband":
            low = max(self.n_warmup_steps, self.eval_interval)
            return f"hyperband(min_resource={low}, max_resource={self.max_iters}, factor=3)"
        return "none"


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


def check_space(settings: TuneSettings, params: Params) -> None:
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
    budget_keys = {k: f"tune.{k}" for k in settings.budget()}
    corners = [[(k, v) for v in values] for k, values in settings.space.items()]
    for point in itertools.product(*corners):
        chosen = dict(point)
        model, train = settings.overrides(chosen)
        try:
            params.model_config(2, rope=True, moe=True, fgram=True, overrides=model, keys=keys)
            params.train_config(
                params.seeds[0], {**settings.budget(), **train}, {**keys, **budget_keys}
            )
        except ParamsError as err:
            where = ", ".join(f"{k}={v}" for k, v in chosen.items())
            raise ParamsError(f"{err} (with tune.space {where})") from None


def load_tune_settings(params: Params) -> TuneSettings:
    """``tune:`` of params.yaml, checked; a bad value raises ParamsError naming its key."""
    settings = params.read(TuneSettings, "tune")
    check_space(settings, params)
    return settings
