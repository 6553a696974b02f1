"""The ``tune:`` section of params.yaml, checked once, and the search space it defines.

The search space lives in one place: ``tune.space`` in params.yaml says which values each
hyper-parameter may take, and ``DIMS`` below says how each key is sampled and which config
it overrides. Every rule is checked before any trial runs, and an error names its key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.params import Params, ParamsError


@dataclass(frozen=True)
class Dim:
    kind: str  # "choice": a list of values | "int": [low, high], inclusive | "log": [low, high]
    target: str  # "model": a GPTConfig override | "train": a TrainConfig override
    required: bool


# What each key of tune.space means. Keys left out of params.yaml keep their fixed value
# (moe.top_k, train.learning_rate).
DIMS: dict[str, Dim] = {
    "n_experts": Dim("choice", "model", required=True),
    "fgram_max_n": Dim("int", "model", required=True),
    "top_k": Dim("choice", "model", required=False),
    "learning_rate": Dim("log", "train", required=False),
}

PRUNERS = ("median", "percentile", "hyperband", "none")


def _fail(key: str, rule: str) -> None:
    raise ParamsError(f"params.yaml: tune.{key}: {rule}")


def _int(sec: dict, key: str, low: int, default: Any = ...) -> int:
    if key not in sec:
        if default is ...:
            _fail(key, "is missing")
        return default
    value = sec[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        _fail(key, f"must be an integer >= {low}, got {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TuneSettings:
    study_name: str
    max_iters: int
    eval_interval: int
    eval_iters: int
    pruner: str
    percentile: float
    n_startup_trials: int
    n_warmup_steps: int
    space: dict[str, list]  # key of DIMS -> its choices, or [low, high]

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


def _check_space(space: Any, params: Params) -> dict[str, list]:
    if not isinstance(space, dict) or not space:
        _fail("space", "must be a mapping of hyper-parameters to their values")
    unknown = sorted(set(space) - set(DIMS))
    if unknown:
        _fail(f"space.{unknown[0]}", f"unknown hyper-parameter; known: {list(DIMS)}")
    for key, dim in DIMS.items():
        if dim.required and key not in space:
            _fail(f"space.{key}", "is missing")

    out: dict[str, list] = {}
    for key in DIMS:  # a fixed order, so the sampler sees the same space every run
        if key not in space:
            continue
        values, kind = space[key], DIMS[key].kind
        where = f"space.{key}"
        if not isinstance(values, list) or not values:
            _fail(where, "must be a non-empty list")
        if kind == "choice":
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                _fail(where, f"choices must be integers, got {values!r}")
            if len(set(values)) != len(values):
                _fail(where, f"has repeated choices {values!r}")
        elif len(values) != 2 or not all(_number(v) for v in values):
            _fail(where, f"must be a range [low, high] of two numbers, got {values!r}")
        elif values[0] > values[1]:
            _fail(where, f"low {values[0]} is above high {values[1]}")
        if kind == "int" and not all(isinstance(v, int) for v in values):
            _fail(where, f"must be a range of two integers, got {values!r}")
        out[key] = [float(v) for v in values] if kind == "log" else list(values)

    experts = out["n_experts"]
    if min(experts) < 2 or max(experts) > 64:
        _fail("space.n_experts", f"every choice must be in [2, 64], got {experts}")
    low, high = out["fgram_max_n"]
    if low < 2:
        _fail("space.fgram_max_n", f"low {low} is below 2 (an F-gram has 2 or more characters)")
    if high > params.fgram.mine_max_n:
        _fail(
            "space.fgram_max_n",
            f"high {high} is above fgram.mine_max_n={params.fgram.mine_max_n}; "
            "mine longer F-grams or lower it",
        )
    block = params.raw["model"].get("block_size")
    if isinstance(block, int) and high > block:
        _fail("space.fgram_max_n", f"high {high} is above model.block_size={block}")
    if "top_k" in out:
        top_k = out["top_k"]
        if min(top_k) < 1 or max(top_k) > min(experts):
            _fail(
                "space.top_k",
                f"every choice must be in [1, min(n_experts)={min(experts)}], got {top_k}",
            )
    elif params.raw["moe"].get("top_k", 1) > min(experts):
        _fail("space.n_experts", f"choice {min(experts)} is below moe.top_k (add space.top_k)")
    if "learning_rate" in out:
        lr_low, _ = out["learning_rate"]
        min_lr = params.raw["train"].get("min_lr", 0.0)
        if lr_low <= 0:
            _fail("space.learning_rate", f"low {lr_low} must be > 0 (log-uniform range)")
        if _number(min_lr) and lr_low < min_lr:
            _fail("space.learning_rate", f"low {lr_low} is below train.min_lr={min_lr}")
    return out


def load_tune_settings(params: Params) -> TuneSettings:
    """``tune:`` of params.yaml as TuneSettings; a bad value raises ParamsError naming it."""
    sec = params.raw.get("tune")
    if not isinstance(sec, dict):
        raise ParamsError("params.yaml: section 'tune' is missing or not a mapping")
    known = {
        "study_name",
        "max_iters",
        "eval_interval",
        "eval_iters",
        "pruner",
        "percentile",
        "n_startup_trials",
        "n_warmup_steps",
        "space",
    }
    unknown = sorted(set(sec) - known)
    if unknown:
        _fail(unknown[0], f"unknown key; keys are {sorted(known)}")
    name = sec.get("study_name", "nanomoe-tune")
    if not isinstance(name, str) or not name.strip():
        _fail("study_name", "must be a non-empty string")
    pruner = sec.get("pruner", "median")
    if pruner not in PRUNERS:
        _fail("pruner", f"must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    percentile = sec.get("percentile", 50.0)
    if not _number(percentile) or not 0 < percentile < 100:
        _fail("percentile", f"must be a number in (0, 100), got {percentile!r}")
    settings = TuneSettings(
        study_name=name,
        max_iters=_int(sec, "max_iters", 1),
        eval_interval=_int(sec, "eval_interval", 1),
        eval_iters=_int(sec, "eval_iters", 1),
        pruner=pruner,
        percentile=float(percentile),
        n_startup_trials=_int(sec, "n_startup_trials", 0, 5),
        n_warmup_steps=_int(sec, "n_warmup_steps", 0, 0),
        space=_check_space(sec.get("space"), params),
    )
    if settings.eval_interval > settings.max_iters:
        _fail("eval_interval", f"must be <= tune.max_iters={settings.max_iters}")

    # Build the extreme configs once, so any rule the model or trainer enforces fails now.
    for n_experts in settings.space["n_experts"]:
        model = {"n_experts": n_experts, "fgram_max_n": settings.space["fgram_max_n"][1]}
        if "top_k" in settings.space:
            model["top_k"] = min(settings.space["top_k"])
        try:
            params.model_config(vocab_size=2, rope=True, moe=True, fgram=True, **model)
        except ParamsError as err:
            raise ParamsError(f"{err} (with tune.space n_experts={n_experts})") from None
    for lr in settings.space.get("learning_rate", [None]):
        lr_override = {} if lr is None else {"learning_rate": lr}
        params.train_config(seed=params.seeds[0], **settings.budget(), **lr_override)
    return settings
