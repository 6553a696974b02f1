"""Tune NanoMoE's MoE and F-gram settings with Optuna: minimize the full validation loss.

    python -m pipeline.tune --trials 50              # a study in experiments/tune/journal.log
    python -m pipeline.tune --trials 50              # again, in a second terminal: 2 workers
    python -m pipeline.tune --trials 200 --storage postgresql://user@host/db   # every machine
    python -m pipeline.tune --report-only            # rebuild the report from the storage

Every trial trains the full model (RoPE, MoE and F-grams on) for ``tune.max_iters`` steps,
with the hyper-parameters of ``tune.space`` in params.yaml sampled by TPE, and is pruned at an
eval when the pruner (``tune.pruner``) finds it worse than earlier trials were at that step.
A trial whose loss goes non-finite is pruned too, and the study goes on.

``--trials N``: the study ends with N finished trials in total, where finished means
COMPLETE or PRUNED, however many workers, restarts and interruptions it takes. Failed trials
(a crash, Ctrl-C, a killed process) do not count and are run again; a trial left RUNNING by
a dead process is marked FAIL by the next worker (see pipeline/tune_study.py).

Writes best.json, trials.csv and plots to experiments/tune/ (to experiments/tune/<study>/
for a study not named tune.study_name), and logs to MLflow experiment ``nanomoe-tune`` one
parent run per study and one nested run per trial. Missing prepared data or F-grams are
brought up to date first with ``dvc repro mine_fgrams``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cli import StageError, run
from pipeline.params import Params, load_params, repo_root
from pipeline.paths import FGRAMS, PREPARED, TUNE_DIR
from pipeline.tune_settings import TuneSettings, load_tune_settings

if TYPE_CHECKING:  # the heavy imports wait until --help and params checks have passed
    import optuna
    from optuna.trial import FrozenTrial

    from nanomoe.trainer import Callback

EXPERIMENT = "nanomoe-tune"
POLL_S = 2.0  # how often a worker with nothing to claim looks again
NOT_COMPARED = {"device", "compile", "progress", "checkpoint_interval"}  # of train:


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.tune",
        description=__doc__.split("\n\n")[0],
        epilog="Search space, budget and pruner: the tune: section of params.yaml. Several "
        "workers on one machine should share its cores (e.g. OMP_NUM_THREADS=1 with 2 workers "
        "on 2 cores).",
    )
    ap.add_argument(
        "--trials",
        type=int,
        help="finished (complete or pruned) trials the study ends with, earlier runs included",
    )
    ap.add_argument("--study-name", help="default: tune.study_name of params.yaml")
    ap.add_argument(
        "--storage",
        help="a journal file path, or an SQLAlchemy URL such as postgresql://user@host/db "
        "(default: experiments/tune/journal.log)",
    )
    ap.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    ap.add_argument("--seed", type=int, help="training seed of every trial, and the sampler's")
    ap.add_argument(
        "--report-only", action="store_true", help="only rebuild the report from the storage"
    )
    a = ap.parse_args(argv)
    if not a.report_only and (a.trials is None or a.trials < 1):
        ap.error("--trials N (N >= 1) is required, unless --report-only")
    if a.study_name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", a.study_name):
        ap.error("--study-name: letters, digits, '.', '_' and '-' only")
    if a.timeout is not None and a.timeout <= 0:
        ap.error("--timeout must be > 0")
    return a


# --- inputs ----------------------------------------------------------------------------------


def _upstream_missing(root: Path, settings: TuneSettings) -> str | None:
    for name in ("meta.json", "train.bin", "val.bin"):
        if not (root / PREPARED / name).exists():
            return f"{PREPARED}/{name}"
    if not (root / FGRAMS).exists():
        return str(FGRAMS)
    mined = json.loads((root / FGRAMS).read_text(encoding="utf-8")).get("mine_max_n")
    if mined is not None and mined < settings.space["fgram_max_n"][1]:
        return f"{FGRAMS} mined up to n={mined} only"
    return None


def ensure_upstream(root: Path, settings: TuneSettings) -> None:
    """Run the upstream DVC stages when the prepared data or the mined F-grams are missing
    (mining runs once for every trial: each loads only the F-grams it may use)."""
    from pipeline.tune_study import local_lock

    if _upstream_missing(root, settings) is None:
        return
    with local_lock(root / TUNE_DIR / "upstream.lock"):  # one worker runs DVC, others wait
        missing = _upstream_missing(root, settings)
        if missing is None:
            return
        print(f"{missing} is missing: running dvc repro mine_fgrams", flush=True)
        cmd = [sys.executable, "-m", "dvc", "repro", "mine_fgrams"]
        # The stages run `python -m ...`: make that this interpreter, as for this command.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        if subprocess.run(cmd, cwd=root, env={**os.environ, "PATH": path}).returncode != 0:
            raise StageError("dvc repro mine_fgrams failed (see above); fix it and rerun")
    missing = _upstream_missing(root, settings)
    if missing is not None:
        raise StageError(f"{missing} is still missing after dvc repro mine_fgrams")


def fingerprint(params: Params, settings: TuneSettings, seed: int) -> dict:
    """Every setting that makes two trials' losses comparable: a study keeps one, and
    refuses to go on under another (what the study tunes or overrides is left out)."""
    raw, tuned = params.raw, {*settings.space, *settings.budget()}
    fp = {
        "space": settings.space,
        "budget": settings.budget(),
        "seed": seed,
        "data": {"sha256": params.data.sha256, "val_fraction": params.data.val_fraction},
        "fgram": {k: raw["fgram"][k] for k in ("mine_max_n", "min_count", "max_fgrams", "n_head")},
        "model": raw["model"],
        "moe": {k: v for k, v in raw["moe"].items() if k not in tuned},
        "train": {k: v for k, v in raw["train"].items() if k not in tuned | NOT_COMPARED},
    }
    return json.loads(json.dumps(fp))  # as the storage gives it back


def _safe_url(url: str | None) -> str:
    if url and "://" in url:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    return url or str(TUNE_DIR / "journal.log")


# --- MLflow ----------------------------------------------------------------------------------


def _client():
    import mlflow

    from pipeline.tracking import retry_locked

    client = mlflow.MlflowClient()

    class Locked:  # every client call retried while SQLite is locked by another worker
        def __getattr__(self, name: str):
            return retry_locked(getattr(client, name))

    return Locked()


def close_dead_run(trial: FrozenTrial, why: str) -> None:
    """The MLflow run of a trial whose process died: FAILED, with the reason."""
    import mlflow

    run_id = trial.user_attrs.get("mlflow_run_id")
    if not run_id:
        return
    try:
        client = _client()
        client.set_tag(run_id, "state", "failed")
        client.set_tag(run_id, "note", why)
        client.set_terminated(run_id, "FAILED")
    except mlflow.exceptions.MlflowException as err:
        print(f"warning: could not close MLflow run {run_id}: {err}", file=sys.stderr)


class Tracker:
    """One MLflow parent run per study, one nested run per trial, through the client API
    (no fluent state shared between trials). The parent's id lives in the study's user
    attrs, so every worker of the study, on any machine, attaches its trials to it."""

    STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}

    def __init__(self, experiment_id: str, parent_id: str) -> None:
        self.client = _client()
        self.experiment_id, self.parent_id = experiment_id, parent_id

    @classmethod
    def attach(
        cls, study: optuna.Study, settings: TuneSettings, seed: int, n_trials: int, storage: str
    ) -> Tracker:
        """Find or create the study's parent run (call under the local lock)."""
        import mlflow
        from mlflow.entities import Param, RunTag

        from pipeline.tracking import git_commit, use_experiment

        experiment_id = use_experiment(EXPERIMENT)
        client = _client()
        parent_id = study.user_attrs.get("mlflow_parent_run_id")
        try:
            if parent_id and client.get_run(parent_id).info.lifecycle_stage != "active":
                parent_id = None
        except mlflow.exceptions.MlflowException:  # another MLflow store, or deleted
            parent_id = None
        if parent_id is None:
            parent = client.create_run(
                experiment_id,
                run_name=study.study_name,
                tags={"optuna.study": study.study_name, "git_commit": git_commit() or "unknown"},
            )
            parent_id = parent.info.run_id
            logged = {
                "study_name": study.study_name,
                "variant": "rope+moe+fgram",
                "sampler": "TPESampler(seed=SeedSequence([seed, trial number]), constant_liar)",
                "pruner": settings.describe_pruner(),
                "seed": seed,
                **settings.budget(),
                **{f"space.{k}": json.dumps(v) for k, v in settings.space.items()},
            }
            client.log_batch(parent_id, params=[Param(k, str(v)) for k, v in logged.items()])
            study.set_user_attr("mlflow_parent_run_id", parent_id)
            winner = study.user_attrs["mlflow_parent_run_id"]
            if winner != parent_id:  # a worker on another machine created one just now
                client.delete_run(parent_id)
                parent_id = winner
        tags = {"n_trials": str(n_trials), "storage": storage, "pruner": settings.pruner}
        client.log_batch(parent_id, tags=[RunTag(k, v) for k, v in tags.items()])
        client.update_run(parent_id, status="RUNNING")
        return cls(experiment_id, parent_id)

    def start_trial(self, trial: optuna.Trial, chosen: dict[str, Any], seed: int) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.number}",
            tags={
                "mlflow.parentRunId": self.parent_id,
                "optuna.study": trial.study.study_name,
                "optuna.trial": str(trial.number),
                "state": "running",
            },
        )
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        logged = {**chosen, "seed": seed, "trial": trial.number}
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in logged.items()])
        return run_id

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.client.log_param(run_id, key, value)

    def end_trial(self, run_id: str, frozen: FrozenTrial) -> None:
        state = frozen.state.name
        self.client.set_tag(run_id, "state", {"FAIL": "failed"}.get(state, state.lower()))
        if frozen.user_attrs.get("note"):
            self.client.set_tag(run_id, "note", str(frozen.user_attrs["note"])[:5000])
        steps = frozen.user_attrs.get("steps", 0)
        self.client.log_metric(run_id, "steps_trained", steps, step=steps)
        if state == "COMPLETE":
            self.client.log_metric(run_id, "final_val_loss", frozen.value, step=steps)
        self.client.set_terminated(run_id, self.STATUS.get(state, "FAILED"))

    def finish(self, info: dict, out: Path, status: str) -> None:
        metrics = {
            "finished": info["finished"],
            "pruning_saving": info["pruning_saving"],
            **{f"n_{k}": v for k, v in info["trials"].items() if k in ("complete", "pruned")},
            "n_failed": info["trials"]["fail"],
        }
        if info["best_value"] is not None:
            metrics["best_val_loss"] = info["best_value"]
            self.client.set_tag(self.parent_id, "best_params", json.dumps(info["best_params"]))
        for key, value in metrics.items():
            self.client.log_metric(self.parent_id, key, value, step=info["finished"])
        for path in sorted(out.iterdir()):
            if path.is_file() and path.suffix in (".json", ".csv", ".png", ".html"):
                self.client.log_artifact(self.parent_id, str(path), "report")
        self.client.set_terminated(self.parent_id, status)


# --- one trial -------------------------------------------------------------------------------


@dataclass
class Context:
    params: Params
    settings: TuneSettings
    seed: int
    vocab_size: int
    train: Any  # np.memmap of the train split
    val: Any
    fgrams_path: Path
    tracker: Tracker
    lock_path: Path


def _pruning_callback(trial: optuna.Trial) -> Callback:
    """A trainer callback: report each eval's val loss; prune when the pruner says so, or
    when the loss is not finite."""
    import math

    import optuna

    from nanomoe.trainer import Callback

    class PruneOnEval(Callback):
        def on_eval(self, step: int, metrics: dict[str, float]) -> None:
            loss = metrics["val_loss"]
            if not math.isfinite(loss):
                trial.set_user_attr("nonfinite", True)
                raise optuna.TrialPruned(f"val loss {loss} at step {step}")
            trial.report(loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} (val loss {loss:.4f})")

    return PruneOnEval()


def objective(trial: optuna.Trial, chosen: dict[str, Any], run_id: str, ctx: Context) -> float:
    """Train the full model at one point of the space; return its full-split val loss."""
    import optuna

    from nanomoe.fgram import load_fgrams
    from nanomoe.model import GPT
    from nanomoe.trainer import NonFiniteLossError, Trainer, set_seed
    from pipeline.tracking import MLflowCallback

    model_kw, train_kw = ctx.settings.overrides(chosen)
    config = ctx.params.model_config(ctx.vocab_size, rope=True, moe=True, fgram=True, **model_kw)
    budget = {**ctx.settings.budget(), "progress": False, **train_kw}
    train_cfg = ctx.params.train_config(ctx.seed, **budget)
    fgrams = load_fgrams(ctx.fgrams_path, max_n=config.fgram_max_n)
    ctx.tracker.log_param(run_id, "n_fgrams", len(fgrams))

    set_seed(ctx.seed)
    model = GPT(config, fgrams=fgrams)
    callbacks = [MLflowCallback(run_id), _pruning_callback(trial)]
    trainer = Trainer(model, ctx.train, ctx.val, train_cfg, callbacks=callbacks)
    try:
        return trainer.fit().val_loss
    except NonFiniteLossError as err:
        trial.set_user_attr("nonfinite", True)
        raise optuna.TrialPruned(str(err)) from None
    finally:
        trial.set_user_attr("steps", trainer.step)
        trial.set_user_attr("max_iters", train_cfg.max_iters)


def run_trial(study: optuna.Study, trial: optuna.Trial, ctx: Context) -> FrozenTrial:
    """Sample, train, tell Optuna and MLflow how it ended; return the finished trial."""
    import optuna
    from optuna.trial import TrialState

    value, state, note, run_id = None, TrialState.FAIL, "", None
    try:
        chosen = ctx.settings.suggest(trial)
        run_id = ctx.tracker.start_trial(trial, chosen, ctx.seed)
        value = objective(trial, chosen, run_id, ctx)
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
        if run_id is not None:
            ctx.tracker.end_trial(run_id, frozen)
    return frozen


def progress_line(study: optuna.Study, frozen: FrozenTrial, n_trials: int) -> str:
    from pipeline.tune_report import best_trial
    from pipeline.tune_study import FINISHED

    trials = study.get_trials(deepcopy=False)
    best = best_trial(trials)
    params = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in frozen.params.items()
    )
    value = "n/a" if frozen.value is None else f"{frozen.value:.4f}"
    best_text = f"{best.value:.4f} (trial {best.number})" if best else "n/a"
    done = sum(t.state in FINISHED for t in trials)
    return (
        f"trial {frozen.number:3d} {frozen.state.name.lower():8s} val_loss {value} "
        f"after {frozen.user_attrs.get('steps', 0)} steps ({params}) | best {best_text} | "
        f"{done}/{n_trials} finished"
    )


# --- the worker loop -------------------------------------------------------------------------


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number``: one worker replays a study exactly, and
    parallel workers never draw the same random start-up points. Mixed by SeedSequence:
    consecutive seeds give numpy's RandomState correlated first draws."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def work(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    ctx: Context,
    n_trials: int,
    timeout: float | None,
) -> None:
    """Claim and run trials until the study has ``n_trials`` finished ones (or timeout)."""
    import optuna

    from pipeline.tune_study import claim_trial, heartbeat, local_lock, reap_dead_trials

    deadline = time.monotonic() + timeout if timeout else None
    waiting = False
    while True:
        with local_lock(ctx.lock_path):
            for t in reap_dead_trials(study, close_dead_run):
                print(f"trial {t.number:3d} failed: its process is gone", flush=True)
            if deadline is not None and time.monotonic() > deadline:
                print("timeout: starting no more trials", flush=True)
                return
            what, trial = claim_trial(study, n_trials)
        if what == "done":
            return
        if what == "wait":
            if not waiting:
                print("waiting for other workers' trials to finish", flush=True)
            waiting = True
            time.sleep(POLL_S)
            continue
        waiting = False
        study.sampler = optuna.samplers.TPESampler(seed=trial_seed(ctx.seed, trial.number))
        with heartbeat(storage, trial):
            frozen = run_trial(study, trial, ctx)
        print(progress_line(study, frozen, n_trials), flush=True)


def print_summary(info: dict, out: Path, root: Path) -> None:
    t = info["trials"]
    print(
        f"study {info['study']}: {info['finished']} finished ({t['complete']} complete, "
        f"{t['pruned']} pruned), {t['fail']} failed"
    )
    if info["best_value"] is not None:
        params = " ".join(f"{k}={v}" for k, v in info["best_params"].items())
        print(f"best val_loss {info['best_value']:.4f} (trial {info['best_trial']}): {params}")
    print(
        f"pruning saved {info['pruning_saving']:.1%} of trial-iterations: "
        f"{info['steps_trained']:,} steps trained of {info['steps_without_pruning']:,} "
        "had every finished trial run to tune.max_iters"
    )
    print(f"report -> {out.relative_to(root) if out.is_relative_to(root) else out}/")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # kill (SIGTERM) ends the running trial as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    params = load_params()
    settings = load_tune_settings(params)  # a bad search space fails here, before any trial
    root = repo_root()
    name = a.study_name or settings.study_name
    seed = params.seeds[0] if a.seed is None else a.seed
    out = root / TUNE_DIR if name == settings.study_name else root / TUNE_DIR / name

    import warnings

    import optuna

    from pipeline.tune_report import write_report
    from pipeline.tune_study import local_lock, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # we beat, not optimize()
    journal = root / TUNE_DIR / "journal.log"

    if a.report_only:
        if not a.storage and not journal.exists():
            raise StageError(f"{journal.relative_to(root)} not found; run a study first")
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(a.storage, journal))
        except KeyError:
            raise StageError(f"no study named {name!r} in {_safe_url(a.storage)}") from None
        print_summary(write_report(study, out), out, root)
        return 0

    ensure_upstream(root, settings)
    from nanomoe.data import load_meta, load_split

    meta = load_meta(root / PREPARED)
    try:
        storage = open_storage(
            a.storage, journal, on_stale=lambda s, t: close_dead_run(t, "its heartbeat stopped")
        )
    except Exception as err:  # a bad URL, a missing database driver, a refused connection
        raise StageError(f"--storage {_safe_url(a.storage)}: {err}".split("\n")[0]) from None
    lock_path = root / TUNE_DIR / "tune.lock"
    with local_lock(lock_path):  # study, settings and parent run: created once
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="minimize",
            load_if_exists=True,
            pruner=settings.make_pruner(),
        )
        fp = fingerprint(params, settings, seed)
        if "settings" not in study.user_attrs:
            study.set_user_attr("settings", fp)
        elif study.user_attrs["settings"] != fp:
            differ = sorted(k for k in fp if study.user_attrs["settings"].get(k) != fp[k])
            raise StageError(
                f"study {name!r} was run with other settings ({', '.join(differ)} differ "
                "from params.yaml/--seed); use a new --study-name, or restore them"
            )
        tracker = Tracker.attach(study, settings, seed, a.trials, _safe_url(a.storage))
    ctx = Context(
        params=params,
        settings=settings,
        seed=seed,
        vocab_size=meta["vocab_size"],
        train=load_split(root / PREPARED, "train"),
        val=load_split(root / PREPARED, "val"),
        fgrams_path=root / FGRAMS,
        tracker=tracker,
        lock_path=lock_path,
    )
    print(
        f"study {name}: {a.trials} finished trials wanted; {settings.max_iters} iters each, "
        f"pruner {settings.describe_pruner()}; storage {_safe_url(a.storage)}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    start, status = time.perf_counter(), "FAILED"
    try:
        work(study, storage, ctx, a.trials, a.timeout)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        info = write_report(study, out)
        tracker.finish(info, out, status)
        print_summary(info, out, root)
        print(f"wall time {time.perf_counter() - start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    run(main)
