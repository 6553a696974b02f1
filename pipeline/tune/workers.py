"""The worker loop: many processes share one study and stop at exactly N finished trials.

- Ownership: right after a trial is created, its owner (host, boot id, pid and the process's
  start time) is stored as the trial's user attr ``owner``. A RUNNING trial whose owner is
  on this host and no longer running is marked FAIL by the next worker that starts or
  claims a trial. The start time guards against a recycled pid; the boot id against a
  reboot. A RUNNING trial with no owner (its process died in the instant between creating
  it and recording the owner) is failed once it is ``UNOWNED_GRACE_S`` old. With
  ``tune.reap_local_dead: false`` the process check is off (containers that share a
  hostname but not their pids): then, as for a worker on another host, only a database
  storage's heartbeats find the trial (``tune.heartbeat_grace`` after its last one).
- Finished means COMPLETE or PRUNED (a diverged trial is pruned). FAIL trials (a crash, a
  kill, Ctrl-C) do not count, so a restarted study runs them again.
- Claiming: under a lock file (one machine), a worker counts finished plus in-flight trials
  and creates a trial only while that is below N: search trials up to N - tune.finalists,
  then, once every search trial has finished, the finalists (ladder.py), queued as WAITING
  trials with their source's settings. A finalist that fails is queued again. Workers on
  other machines cannot see the lock, so after creating a trial a worker also checks its
  rank: if N trials with smaller numbers are finished or in flight (or, for a finalist, a
  finalist of the same source), its trial is surplus, marked FAIL (user attr ``surplus``)
  and never trained.

Where the study lives, and the locks and heartbeats, are in storage.py.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.tune.ladder import Ladder, is_finalist
from pipeline.tune.objective import TrialContext, run_trial
from pipeline.tune.report import FINISHED, progress_line
from pipeline.tune.runs import close_trial_run
from pipeline.tune.storage import heartbeat, local_lock

IN_FLIGHT = (TrialState.RUNNING,)  # WAITING (enqueued) trials are popped by study.ask()
UNOWNED_GRACE_S = 120
POLL_S = 2.0  # how often a worker with nothing to claim looks again


# --- who owns a trial ------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None if it is not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after "pid (comm)"


def this_owner() -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": pid,
        "start": _start_time(pid) or "",
    }


def owner_alive(owner: dict) -> bool | None:
    """Whether the process that owns a trial still runs; None when it is on another host."""
    if owner.get("host") != socket.gethostname():
        return None
    if owner.get("boot") and _boot_id() and owner["boot"] != _boot_id():
        return False  # the machine rebooted since
    pid = int(owner["pid"])
    if Path("/proc").is_dir():
        start = _start_time(pid)
        return start is not None and (not owner.get("start") or start == owner["start"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat_stopped(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's callback for a trial it failed because its heartbeat stopped."""
    print(f"trial {trial.number:3d} failed: its heartbeat stopped", flush=True)
    close_trial_run(trial, "its heartbeat stopped")


def reap_dead_trials(
    study: optuna.Study, on_fail: Callable[[FrozenTrial, str], None], local: bool = True
) -> list[FrozenTrial]:
    """Mark FAIL every RUNNING trial whose heartbeat stopped (a database storage), or, with
    ``local``, whose process on this host is gone; return the latter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeats (RDB); calls its own callback
    reaped = []
    now = dt.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner")
        if owner:
            dead = local and owner_alive(owner) is False
            why = f"its process {owner['host']}:{owner['pid']} died"
        else:
            age = (now - t.datetime_start).total_seconds() if t.datetime_start else 0.0
            dead = age > UNOWNED_GRACE_S
            why = f"it has had no owner for {age:.0f}s"
        if not dead:
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        on_fail(t, why)
        reaped.append(t)
    return reaped


# --- claiming trials -------------------------------------------------------------------------


def count(trials: list[FrozenTrial], states: tuple[TrialState, ...]) -> int:
    return sum(t.state in states for t in trials)


def is_surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether N trials numbered below ``trial`` are finished or in flight already, or (a
    finalist) another finalist of the same source is."""
    ahead = [
        t
        for t in study.get_trials(deepcopy=False, states=FINISHED + IN_FLIGHT)
        if t.number < trial.number
    ]
    source = trial.user_attrs.get("source") if trial.user_attrs.get("finalist") else None
    twin = any(is_finalist(t) and t.user_attrs.get("source") == source for t in ahead)
    return len(ahead) >= n_trials or (source is not None and twin)


def enqueue_finalists(study: optuna.Study, ladder: Ladder) -> None:
    """Queue a finalist for each of the best search trials that has none yet (or whose
    finalist failed): the same settings, trained to the top rung."""
    trials = study.get_trials(deepcopy=False)
    live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    have = {t.user_attrs.get("source") for t in trials if is_finalist(t) and t.state in live}
    for t in ladder.choose_finalists(trials):
        if t.number not in have:
            study.enqueue_trial(t.params, user_attrs={"finalist": True, "source": t.number})


def claim_trial(
    study: optuna.Study, n_trials: int, ladder: Ladder
) -> tuple[str, optuna.Trial | None]:
    """One step of a worker, to call under ``local_lock``: ("done", None) once N trials are
    finished; ("wait", None) while in-flight trials may still complete the N, or the search
    must end before the finalists are chosen; else ("run", trial), a new trial owned by
    this process: a search trial while fewer than N - finalists were run, then a finalist."""
    trials = study.get_trials(deepcopy=False)
    finished = count(trials, FINISHED)
    if finished >= n_trials:
        return "done", None
    if finished + count(trials, IN_FLIGHT) >= n_trials:
        return "wait", None
    search = [t for t in trials if not is_finalist(t)]
    if count(search, FINISHED + IN_FLIGHT) >= n_trials - ladder.finalists:
        if count(search, IN_FLIGHT):
            return "wait", None  # the finalists are chosen from the whole search
        enqueue_finalists(study, ladder)
    trial = study.ask()
    trial.set_user_attr("owner", this_owner())
    if is_surplus(study, trial, n_trials):  # a worker on another machine was faster
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        return "wait", None
    return "run", trial


# --- the loop --------------------------------------------------------------------------------


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number``: one worker replays a study exactly, and
    parallel workers never draw the same random start-up points. Mixed by SeedSequence:
    consecutive seeds give numpy's RandomState correlated first draws."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def run_worker(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    ctx: TrialContext,
    n_trials: int,
    timeout: float | None,
) -> None:
    """Claim and run trials until the study has ``n_trials`` finished ones (or timeout)."""
    deadline = time.monotonic() + timeout if timeout else None
    waiting = False
    while True:
        with local_lock(ctx.lock_path):
            for t in reap_dead_trials(study, close_trial_run, ctx.settings.reap_local_dead):
                print(f"trial {t.number:3d} failed: its process is gone", flush=True)
            if deadline is not None and time.monotonic() > deadline:
                print("timeout: starting no more trials", flush=True)
                return
            what, trial = claim_trial(study, n_trials, ctx.ladder)
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
