"""One worker's session on a study, step by step, once the command's arguments and params
have passed their checks (cli.py): the inputs, the storage, the study and its MLflow parent
run, what every trial shares, the helper workers, the trials and ``--confirm``, and the
report however the session ends. ``--report-only`` takes a short cut: the report alone.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch

from nanomoe.data import load_split
from nanomoe.fgram import load_fgrams
from nanomoe.switches import variant_name
from nanomoe.tokenizer import Tokenizer
from pipeline.data.tokens import read_tokens
from pipeline.stage import StageError
from pipeline.tune import storage as tune_storage  # through the module: tests wrap its opener
from pipeline.tune.confirm import confirm
from pipeline.tune.inputs import ensure_upstream, fingerprint
from pipeline.tune.jobs import cores, is_helper, resolve_jobs, start_helpers, stop_helpers
from pipeline.tune.objective import TrialContext
from pipeline.tune.report import FINISHED, print_summary, write_report
from pipeline.tune.runs import StudyRuns
from pipeline.tune.settings import tuned_levels
from pipeline.tune.workers import heartbeat_stopped, run_worker

if TYPE_CHECKING:
    from pipeline.tune.command import Command


def run(cmd: Command) -> int:
    quiet_optuna()
    if cmd.args.report_only:
        return report_only(cmd)
    tok = check_inputs(cmd)
    storage = connect(cmd)
    lock_path = cmd.layout.tune_dir / "tune.lock"  # serializes creating studies and claiming
    study, runs, n_trials = attach_study(cmd, storage, lock_path)
    ctx = trial_context(cmd, tok, runs, lock_path)
    if cmd.args.trials is not None:
        announce(cmd, n_trials)
    helpers = start_helper_workers(cmd)
    return run_trials(cmd, study, storage, ctx, helpers)


def quiet_optuna() -> None:
    """Optuna's log lines and warnings that tell a user of this command nothing."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # we beat, not optimize()


def report_only(cmd: Command) -> int:
    """--report-only: the report of a study that exists, rebuilt from the storage alone."""
    if not cmd.args.storage and not cmd.journal.exists():
        raise StageError(f"{cmd.layout.relative(cmd.journal)}: not found; run a study first")
    study = tune_storage.load_study(
        cmd.name, tune_storage.open_storage(cmd.args.storage, cmd.journal), cmd.where
    )
    print_summary(write_report(study, cmd.out), cmd.out, cmd.layout.root)
    return 0


def check_inputs(cmd: Command) -> Tokenizer:
    """The tokenizer's prepared data and F-gram table, brought up to date and checked once
    here rather than in a trial; the tokenizer."""
    layout, kind = cmd.layout, tuned_levels(cmd.params)["tokenizer"]
    ensure_upstream(layout, cmd.settings, kind)
    tok, meta = read_tokens(layout, kind, cmd.params.model.block_size)
    load_fgrams(layout.fgrams(kind), vocab_size=meta["vocab_size"], chars=tok)
    return tok


def connect(cmd: Command) -> optuna.storages.BaseStorage:
    """The study's storage, with heartbeats; a failure in one line, without the password."""
    beat, grace = cmd.settings.heartbeat_interval, cmd.settings.heartbeat_grace
    try:
        return tune_storage.open_storage(
            cmd.args.storage, cmd.journal, beat, grace, on_stale=heartbeat_stopped
        )
    except Exception as err:  # a bad URL, a missing database driver, a refused connection
        line = f"--storage {cmd.where}: {cmd.scrub(str(err))}"
        raise StageError(line.split("\n")[0]) from None


def attach_study(
    cmd: Command, storage: optuna.storages.BaseStorage, lock_path: Path
) -> tuple[optuna.Study, StudyRuns, int]:
    """The study (a search creates it; --confirm alone requires it), checked against these
    settings, its MLflow parent run, and the finished trials it is to end with; under the
    local lock, so that the workers of this machine create each of them once."""
    a, ladder = cmd.args, cmd.ladder
    fp = fingerprint(cmd.params, cmd.settings, ladder, cmd.seed)
    with tune_storage.local_lock(lock_path):
        study = tune_storage.open_study(
            storage, cmd.name, ladder.pruner(), fp, cmd.where, create=a.trials is not None
        )
        n_trials = a.trials or len(study.get_trials(deepcopy=False, states=FINISHED))
        variant = variant_name(tuned_levels(cmd.params))
        runs = StudyRuns.attach(study, ladder, cmd.seed, n_trials, cmd.where, variant)
    return study, runs, n_trials


def trial_context(cmd: Command, tok: Tokenizer, runs: StudyRuns, lock_path: Path) -> TrialContext:
    prepared = cmd.layout.prepared(tok.kind)
    return TrialContext(
        params=cmd.params,
        settings=cmd.settings,
        ladder=cmd.ladder,
        seed=cmd.seed,
        vocab_size=tok.vocab_size,
        tokenizer=tok.kind,
        token_bytes=tok.token_bytes(),
        train=load_split(prepared, "train"),
        val=load_split(prepared, "val"),
        fgrams_path=cmd.layout.fgrams(tok.kind),
        runs=runs,
        lock_path=lock_path,
    )


def announce(cmd: Command, n_trials: int) -> None:
    beat, grace = cmd.settings.heartbeat_interval, cmd.settings.heartbeat_grace
    beats = f" (heartbeat every {beat}s, failed after {grace}s)" if cmd.on_database else ""
    print(
        f"study {cmd.name}: {n_trials} finished trials wanted; {cmd.ladder.describe()}; "
        f"storage {cmd.where}{beats}",
        flush=True,
    )


def start_helper_workers(cmd: Command) -> list:
    """The helper workers of --jobs N (none for --confirm alone); every worker, this one
    included, on its share of the cores."""
    a = cmd.args
    jobs = resolve_jobs(a.jobs, cmd.params.train.device) if a.trials is not None else 1
    if jobs <= 1:
        return []
    threads = max(1, cores() // jobs)
    torch.set_num_threads(threads)
    helpers = start_helpers(*cmd.helper(), jobs - 1, threads)
    print(f"{jobs} workers of {threads} thread(s) each", flush=True)
    return helpers


def run_trials(
    cmd: Command,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    ctx: TrialContext,
    helpers: list,
) -> int:
    """This worker's trials, then --confirm; however that ends, the report and the parent
    run's status (a helper leaves both to the command that started it)."""
    a = cmd.args
    start, status = time.perf_counter(), "FAILED"
    try:
        if a.trials is not None:
            run_worker(study, storage, ctx, a.trials, a.timeout)
            if any(stop_helpers(helpers, wait=True)):
                raise StageError("a helper worker failed (see above); rerun to finish the study")
        if a.confirm is not None:
            torch.set_num_threads(cores())
            confirm(study, ctx, a.confirm, cmd.layout.tune_dir / f"{cmd.name}.confirm.lock")
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        stop_helpers(helpers, wait=False)
        if not is_helper():
            info = write_report(study, cmd.out)
            ctx.runs.finish(info, cmd.out, status)
            print_summary(info, cmd.out, cmd.layout.root)
            print(f"wall time {time.perf_counter() - start:.0f}s", flush=True)
    return 0
