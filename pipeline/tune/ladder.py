"""The budget ladder: successive halving up to the ablation's full budget, with finalists.

A trial trains the full ablation schedule (``train.max_iters`` steps, its warmup and
cosine decay) and is judged at each rung of ``tune.rungs``, a few steps into that schedule:

- At every lower rung but the last, a *search* trial goes on only while it is within the
  best ``1 / reduction_factor`` of the search trials that reached that rung so far (the best
  one always goes on: asynchronous successive halving).
- At the last lower rung every search trial stops. There the study has seen all it will at
  low budget.
- Then the ``finalists`` best search trials, ranked by the highest rung they reached and
  their loss there, are trained again, with the same settings and seed, up to the top rung
  ``train.max_iters``, unpruned. Only finalists reach the top rung, so their number caps the
  full-budget trials, and they are chosen once the whole search is in: an early trial can
  never take the place of a better later one. The best finalist is the study's answer,
  judged on the same full-split val loss as the ablation.

A finalist's first steps repeat its source trial's exactly (same seed, same settings), so
its loss at each lower rung equals its source's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.stage import StageError

SEARCH_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # a trial that counts towards --trials


def is_finalist(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get("finalist"))


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The study's answer: the best trial trained to the top rung (only finalists are)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return min(complete, key=lambda t: t.value) if complete else None


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[int, ...]  # every rung in steps, ascending; the top (train.max_iters) last
    reduction_factor: int
    finalists: int
    eval_iters: int

    @property
    def top(self) -> int:
        return self.rungs[-1]

    @property
    def last_lower(self) -> int:
        return self.rungs[-2]

    def budget(self) -> dict[str, int]:
        """TrainConfig overrides of every trial: the full schedule, an eval at every rung."""
        return {
            "max_iters": self.top,
            "eval_interval": math.gcd(*self.rungs),
            "eval_iters": self.eval_iters,
        }

    def describe(self) -> str:
        rungs = ", ".join(str(r) for r in self.rungs)
        return (
            f"successive halving over rungs {rungs} (eta={self.reduction_factor}), "
            f"{self.finalists} finalists to the top"
        )

    def pruner(self) -> LadderPruner:
        return LadderPruner(self)

    def reached(self, trial: FrozenTrial) -> list[int]:
        """The rungs ``trial`` was judged at."""
        top = [self.top] if trial.state == TrialState.COMPLETE else []
        return [r for r in self.rungs[:-1] if r in trial.intermediate_values] + top

    def search_score(self, trial: FrozenTrial) -> tuple[int, float]:
        """How a search trial ranks for the final: higher rungs first, then lower loss."""
        lower = [r for r in self.rungs[:-1] if r in trial.intermediate_values]
        if not lower:
            return (0, math.inf)
        return (-lower[-1], trial.intermediate_values[lower[-1]])

    def choose_finalists(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The ``finalists`` best finished search trials with distinct settings."""
        done = [
            t
            for t in trials
            if t.state in FINISHED and not is_finalist(t) and math.isfinite(self.search_score(t)[1])
        ]
        chosen: list[FrozenTrial] = []
        for t in sorted(done, key=lambda t: (self.search_score(t), t.number)):
            if all(t.params != c.params for c in chosen):
                chosen.append(t)
            if len(chosen) == self.finalists:
                break
        return chosen


class LadderPruner(optuna.pruners.BasePruner):
    """Optuna's side of the ladder: decides at each rung whether a search trial goes on."""

    def __init__(self, ladder: Ladder) -> None:
        self.ladder = ladder

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if is_finalist(trial) or step not in self.ladder.rungs[:-1]:
            return False
        if step == self.ladder.last_lower:
            return True  # the search ends here; the finalists go on
        mine = trial.intermediate_values[step]
        others = [
            t.intermediate_values[step]
            for t in study.get_trials(deepcopy=False, states=SEARCH_STATES)
            if t.number != trial.number and not is_finalist(t) and step in t.intermediate_values
        ]
        keep = max(1, (len(others) + 1) // self.ladder.reduction_factor)
        return sum(v < mine for v in others) >= keep


def study_ladder(study: optuna.Study) -> Ladder:
    """The ladder the study was run with, as its storage recorded it."""
    fp = study.user_attrs.get("settings", {})
    if "ladder" not in fp:
        raise StageError(
            f"study {study.study_name!r} was run before the budget ladder (no tune.rungs "
            "recorded); its old report stands, and a new study needs a new --study-name"
        )
    lad = fp["ladder"]
    return Ladder(tuple(lad["rungs"]), lad["eta"], lad["finalists"], fp["budget"]["eval_iters"])


def rung_study(trials: list[FrozenTrial], ladder: Ladder, rung: int) -> optuna.Study:
    """An in-memory study of one rung: each trial that rung judged, valued by its loss there
    (the top rung: the finalists' full-split val loss)."""
    study = optuna.create_study(direction="minimize")
    for t in trials:
        if t.state not in FINISHED or rung not in ladder.reached(t):
            continue
        if rung != ladder.top and is_finalist(t):
            continue  # a finalist repeats its source below the top
        value = t.value if rung == ladder.top else t.intermediate_values[rung]
        study.add_trial(
            optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=value)
        )
    return study
