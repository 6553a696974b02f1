"""Tune NanoMoE's MoE and F-gram settings with Optuna: minimize the full validation loss.

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
brought up to date first with ``dvc repro mine_fgrams``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from pipeline.layout import Layout
from pipeline.params import Params, load_params
from pipeline.stage import StageError, run_stage
from pipeline.tune.ladder import Ladder
from pipeline.tune.settings import TuneSettings, load_tune_settings

STORAGE_ENV = "NANOMOE_TUNE_STORAGE"  # --storage's default: a password stays out of `ps`


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


def is_url(storage: str | None) -> bool:
    return bool(storage) and "://" in storage


def helper_args(a: argparse.Namespace, name: str) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of a helper worker: this study, searching
    only. A database URL goes through the environment, where ps does not show its password."""
    args, env = ["--trials", str(a.trials), "--study-name", name], {}
    if is_url(a.storage):
        env[STORAGE_ENV] = a.storage
    elif a.storage is not None:
        args += ["--storage", a.storage]
    for flag, value in (("--seed", a.seed), ("--timeout", a.timeout)):
        if value is not None:
            args += [flag, str(value)]
    return args, env


def safe_url(url: str | None, text: str | None = None) -> str:
    """The storage as it may be printed: a database URL with its password as ``***``; or,
    given ``text`` (an error message), that text without the URL's password."""
    if not is_url(url):
        return (url or "experiments/tune/journal.log") if text is None else text
    found = re.match(r"[^:/]*://[^:/@]*:([^@]*)@", url)  # scheme://user:password@
    if not found or not found[1]:
        return url if text is None else text
    if text is None:
        return f"{url[: found.start(1)]}***{url[found.end(1) :]}"
    for secret in (found[1], unquote(found[1])):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Command:
    """What this command works on, resolved once from its arguments and params.yaml."""

    args: argparse.Namespace
    layout: Layout
    params: Params
    settings: TuneSettings
    ladder: Ladder
    name: str  # the study's
    seed: int  # every trial's training seed, and the sampler's

    @property
    def out(self) -> Path:
        """The report's folder: a study not named tune.study_name reports in its own."""
        tune_dir = self.layout.tune_dir
        return tune_dir if self.name == self.settings.study_name else tune_dir / self.name

    @property
    def journal(self) -> Path:
        return self.layout.tune_dir / "journal.log"

    @property
    def where(self) -> str:
        """The storage as it may be printed."""
        return safe_url(self.args.storage)

    @property
    def on_database(self) -> bool:
        return is_url(self.args.storage)

    def scrub(self, text: str) -> str:
        """``text`` (an error message) without the storage's password."""
        return safe_url(self.args.storage, text)

    def helper(self) -> tuple[list[str], dict[str, str]]:
        """A helper worker's command line and environment: ``helper_args``."""
        return helper_args(self.args, self.name)


def resolve(a: argparse.Namespace) -> Command:
    """params.yaml and its tune: settings, checked against the arguments before any heavy
    import or trial."""
    layout = Layout.load()
    params = load_params(layout.root / "params.yaml")
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
