"""A study in MLflow: one parent run per study, one nested run per trial.

The parent's id lives in the study's user attrs, so every worker of the study, on any
machine, attaches its trials to the same parent. All MLflow calls go through
pipeline/tracking/ (store, retries, dead runs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from pipeline.tracking import Client, Run, close_dead_run, git_commit
from pipeline.tune.ladder import Ladder

EXPERIMENT = "nanomoe-tune"
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}  # trial -> run


def space(study: optuna.Study) -> dict:
    return study.user_attrs.get("settings", {}).get("space", {})


def close_trial_run(trial: FrozenTrial, why: str) -> None:
    """The MLflow run of a trial whose process died: FAILED, with the reason."""
    close_dead_run(trial.user_attrs.get("mlflow_run_id"), why)


class StudyRuns:
    def __init__(self, parent: Run) -> None:
        self.parent = parent

    @classmethod
    def attach(
        cls,
        study: optuna.Study,
        ladder: Ladder,
        seed: int,
        n_trials: int,
        storage: str,
        variant: str,
    ) -> StudyRuns:
        """Find or create the study's parent run (call under the local lock)."""
        parent_id = study.user_attrs.get("mlflow_parent_run_id")
        parent = Run(Client(), parent_id) if parent_id else None
        if parent is None or not parent.is_active():  # none yet, another store, or deleted
            tags = {"optuna.study": study.study_name, "git_commit": git_commit()}
            parent = Run.start(EXPERIMENT, study.study_name, tags)
            parent.log_params(
                {
                    "study_name": study.study_name,
                    "variant": variant,
                    "sampler": "TPESampler(seed=SeedSequence([seed, trial number]), constant_liar)",
                    "pruner": ladder.describe(),
                    "rungs": json.dumps(list(ladder.rungs)),
                    "reduction_factor": ladder.reduction_factor,
                    "finalists": ladder.finalists,
                    "seed": seed,
                    **ladder.budget(),
                    **{f"space.{k}": json.dumps(v) for k, v in space(study).items()},
                }
            )
            study.set_user_attr("mlflow_parent_run_id", parent.id)
            winner = study.user_attrs["mlflow_parent_run_id"]
            if winner != parent.id:  # a worker on another machine created one just now
                parent.delete()
                parent = Run(parent.client, winner)
        parent.set_tags({"n_trials": n_trials, "storage": storage, "pruner": "ladder"})
        parent.end("RUNNING")
        return cls(parent)

    def start_trial(self, trial: optuna.Trial, chosen: dict[str, Any], seed: int) -> Run:
        finalist = bool(trial.user_attrs.get("finalist"))
        tags = {
            "optuna.study": trial.study.study_name,
            "optuna.trial": str(trial.number),
            "state": "running",
            "kind": "finalist" if finalist else "search",
        }
        if finalist:
            tags["source_trial"] = str(trial.user_attrs["source"])
        name = f"{'finalist' if finalist else 'trial'}-{trial.number}"
        run = Run.start(EXPERIMENT, name, tags, parent=self.parent)
        trial.set_user_attr("mlflow_run_id", run.id)
        run.log_params({**chosen, "seed": seed, "trial": trial.number})
        return run

    def end_trial(self, run: Run, frozen: FrozenTrial) -> None:
        state = frozen.state.name
        tags = {"state": {"FAIL": "failed"}.get(state, state.lower())}
        if frozen.user_attrs.get("note"):
            tags["note"] = str(frozen.user_attrs["note"])[:5000]
        run.set_tags(tags)
        steps = frozen.user_attrs.get("steps", 0)
        metrics = {"steps_trained": steps}
        if state == "COMPLETE":
            metrics["final_val_bpb"] = frozen.value
        run.log_metrics(metrics, step=steps)
        run.end(STATUS.get(state, "FAILED"))

    def start_confirmation(self, study: str, arm: str, chosen: dict[str, Any], seed: int) -> Run:
        tags = {"optuna.study": study, "kind": "confirmation", "arm": arm, "seed": str(seed)}
        run = Run.start(EXPERIMENT, f"confirm-{arm}-seed{seed}", tags, parent=self.parent)
        run.log_params({**chosen, "arm": arm, "seed": seed})
        return run

    def finish(self, info: dict, out: Path, status: str) -> None:
        """The study's summary and report files on the parent run, which ends ``status``."""
        metrics = {
            "finished": info["finished"],
            "pruning_saving": info["pruning_saving"],
            **{f"n_{k}": v for k, v in info["trials"].items() if k in ("complete", "pruned")},
            "n_failed": info["trials"]["fail"],
        }
        if info["best_value"] is not None:
            metrics["best_val_bpb"] = info["best_value"]
            self.parent.set_tags({"best_params": json.dumps(info["best_params"])})
        conf = info.get("confirmation")
        if conf:
            for arm, a in conf["arms"].items():
                metrics[f"confirm.{arm}.mean"] = a["mean"]
                metrics[f"confirm.{arm}.ci95"] = a["ci95"]
            metrics["confirm.difference.mean"] = conf["difference"]["mean"]
            metrics["confirm.difference.ci95"] = conf["difference"]["ci95"]
            self.parent.set_tags({"confirmation": conf["difference"]["verdict"]})
        self.parent.log_metrics(metrics, step=info["finished"])
        files = [p for p in sorted(out.iterdir()) if p.is_file()]
        self.parent.log_artifacts(
            [p for p in files if p.suffix in (".json", ".csv", ".png", ".html")], "report"
        )
        self.parent.end(status)
