"""Tune NanoMoE's MoE and F-gram settings with Optuna: minimize the full validation bits per byte.

    python -m pipeline.tune --trials 50              # a study in experiments/tune/journal.log
    python -m pipeline.tune --trials 50              # again, in a second terminal: 2 workers
    python -m pipeline.tune --trials 200 --storage postgresql+psycopg://user@host/db  # many hosts
    NANOMOE_TUNE_STORAGE=postgresql+psycopg://user:pw@host/db python -m pipeline.tune --trials 200
    python -m pipeline.tune --confirm 3              # tuned vs params.yaml, 3 fresh seeds each
    python -m pipeline.tune --report-only            # rebuild the report from the storage

Every trial trains the full model (RoPE, MoE and F-grams on) on the ablation's schedule
(``train.max_iters`` steps), with the hyper-parameters of ``tune.space`` in params.yaml
sampled by TPE, and is judged at the rungs of ``tune.rungs`` by successive halving; search
trials stop at the last lower rung, and the ``tune.finalists`` best of them are trained to the
top rung, ``train.max_iters`` (ladder.py). A trial whose loss goes non-finite is pruned, and
the study goes on.

``--trials N``: the study ends with N finished trials in total (the finalists among them),
where finished means COMPLETE or PRUNED, however many workers, restarts and interruptions
it takes. Failed trials
(a crash, Ctrl-C, a killed process) do not count and are run again; a trial left RUNNING by
a dead process is marked FAIL by the next worker (see workers.py): at once if the process
was on the same host (unless tune.reap_local_dead is false), else once its heartbeat has
stopped for tune.heartbeat_grace seconds (a database storage only).

Writes best.json, trials.csv and plots to experiments/tune/ (to experiments/tune/<study>/
for a study not named tune.study_name), and logs to MLflow experiment ``nanomoe-tune`` one
parent run per study and one nested run per trial. Missing prepared data or F-grams are
brought up to date first with ``dvc repro mine_fgrams@<tokenizer>``.
"""

from __future__ import annotations

import argparse
import os
import re

from pipeline.project import Project
from pipeline.stage import StageError, run_stage
from pipeline.tune.command import STORAGE_ENV, Command, is_url
from pipeline.tune.settings import load_tune_settings


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
        help="a journal file path, or an SQLAlchemy URL such as "
        "postgresql+psycopg://user@host/db (default: $NANOMOE_TUNE_STORAGE if set, else "
        "experiments/tune/journal.log; this flag wins over the variable). Give a URL with a "
        "password through NANOMOE_TUNE_STORAGE, where ps does not show it",
    )
    ap.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    ap.add_argument("--seed", type=int, help="training seed of every trial, and the sampler's")
    ap.add_argument(
        "--confirm",
        type=int,
        metavar="K",
        help="after the study, retrain its best settings and params.yaml's at the full budget "
        "on K fresh seeds each (K >= 2), and compare them paired by seed; resumable",
    )
    ap.add_argument(
        "--jobs",
        default="auto",
        help="workers this command runs, each with cores/N threads (default auto: one "
        "single-threaded worker per core on the CPU, at most 4; one on a GPU)",
    )
    ap.add_argument(
        "--report-only", action="store_true", help="only rebuild the report from the storage"
    )
    a = ap.parse_args(argv)
    if a.storage is None:
        a.storage = os.environ.get(STORAGE_ENV) or None
    if a.trials is not None and a.trials < 1:
        ap.error("--trials N: N must be >= 1")
    if a.jobs != "auto" and not (a.jobs.isdigit() and int(a.jobs) >= 1):
        raise StageError(f"--jobs {a.jobs}: must be auto or an integer >= 1; e.g. --jobs 2")
    if a.confirm is not None and a.confirm < 2:
        raise StageError(f"--confirm {a.confirm}: needs K >= 2 seeds for an interval; use 2+")
    if not a.report_only and a.trials is None and a.confirm is None:
        ap.error("--trials N or --confirm K is required, unless --report-only")
    if a.study_name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", a.study_name):
        ap.error("--study-name: letters, digits, '.', '_' and '-' only")
    if a.timeout is not None and a.timeout <= 0:
        ap.error("--timeout must be > 0")
    return a


def resolve(a: argparse.Namespace) -> Command:
    """params.yaml and its tune: settings, checked against the arguments before any heavy
    import or trial."""
    project = Project.load()
    layout, params = project.layout, project.params
    settings, ladder = load_tune_settings(params)  # a bad setting fails here, before any trial
    if a.trials is not None and not settings.reap_local_dead and not is_url(a.storage):
        raise StageError(
            "params.yaml: tune.reap_local_dead: false leaves only heartbeats to find dead "
            "trials, and a journal file has none; use a database --storage, or set it true"
        )
    if a.trials is not None and a.trials <= settings.finalists:
        raise StageError(
            f"--trials {a.trials}: must be above tune.finalists={settings.finalists}, "
            "so that the search has trials to choose the finalists from; raise it"
        )
    name = a.study_name or settings.study_name
    seed = params.seeds[0] if a.seed is None else a.seed
    return Command(a, layout, params, settings, ladder, name, seed)


def main(argv: list[str] | None = None) -> int:
    cmd = resolve(parse_args(argv))
    # The heavy imports (Optuna, torch, MLflow) wait until --help and the checks have passed.
    from pipeline.tune import session

    return session.run(cmd)


if __name__ == "__main__":
    run_stage(main)
