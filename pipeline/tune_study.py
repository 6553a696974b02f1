"""One Optuna study shared by many worker processes: its storage, who owns each trial,
failing trials whose process died, and claiming trials so that workers stop at exactly N.

- Storage: a JournalStorage file (default ``experiments/tune/journal.log``), which processes
  on one machine share through an flock(2) lock, or any SQLAlchemy URL (``postgresql://...``)
  for many machines, with Optuna heartbeats so a dead machine's trials are failed too.
- Ownership: right after a trial is created, its owner (host, boot id, pid and the process's
  start time) is stored as the trial's user attr ``owner``. A RUNNING trial whose owner is
  on this host and no longer running is marked FAIL by the next worker that starts or
  claims a trial. The start time guards against a recycled pid; the boot id against a
  reboot. A RUNNING trial with no owner (its process died in the instant between creating
  it and recording the owner) is failed once it is ``UNOWNED_GRACE_S`` old.
- Finished means COMPLETE or PRUNED (a diverged trial is pruned). FAIL trials (a crash, a
  kill, Ctrl-C) do not count, so a restarted study runs them again.
- Claiming: under a lock file (one machine), a worker counts finished plus in-flight trials
  and creates a trial only while that is below N. Workers on other machines cannot see the
  lock, so after creating a trial a worker also checks its rank: if N trials with smaller
  numbers are finished or in flight, its trial is surplus, marked FAIL (user attr
  ``surplus``) and never trained.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
IN_FLIGHT = (TrialState.RUNNING,)  # WAITING (enqueued) trials are popped by study.ask()
HEARTBEAT_S = 20  # RDB storages: a trial's process records a heartbeat this often
GRACE_S = 120  # ... and a trial silent this long is failed
UNOWNED_GRACE_S = 120


# --- storage ---------------------------------------------------------------------------------


def open_storage(
    url: str | None,
    default_journal: Path,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """A JournalStorage file for None or a path; an RDBStorage with heartbeats for a URL."""
    if url and "://" in url:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=on_stale,
        )
    path = Path(url) if url else default_journal
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(path), lock_obj=FlockLock(f"{path}.lock"))
    return optuna.storages.JournalStorage(backend)


class FlockLock:
    """The journal file's write lock, by flock(2). The kernel drops it when its process dies,
    so a worker killed mid-write never stalls the others; Optuna's own lock files (made for
    NFS) would make them wait out a 30 s grace period. Every process that writes the
    journal must use this lock: open it through ``open_storage``."""

    def __init__(self, path: str) -> None:
        self.path, self.fd = path, None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextlib.contextmanager
def local_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between the processes of this machine (released if one dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FlockLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat while it runs, where the storage supports heartbeats."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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


def reap_dead_trials(
    study: optuna.Study, on_fail: Callable[[FrozenTrial, str], None]
) -> list[FrozenTrial]:
    """Mark FAIL every RUNNING trial whose process is gone; return them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeats (RDB); calls its own callback
    reaped = []
    now = dt.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner")
        if owner:
            dead = owner_alive(owner) is False
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


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether N trials numbered below ``number`` are finished or in flight already."""
    ahead = study.get_trials(deepcopy=False, states=FINISHED + IN_FLIGHT)
    return sum(t.number < number for t in ahead) >= n_trials


def claim_trial(study: optuna.Study, n_trials: int) -> tuple[str, optuna.Trial | None]:
    """One step of a worker, to call under ``local_lock``: ("done", None) once N trials are
    finished; ("wait", None) while in-flight trials may still complete the N; else
    ("run", trial), a new trial owned by this process."""
    trials = study.get_trials(deepcopy=False)
    finished = count(trials, FINISHED)
    if finished >= n_trials:
        return "done", None
    if finished + count(trials, IN_FLIGHT) >= n_trials:
        return "wait", None
    trial = study.ask()
    trial.set_user_attr("owner", this_owner())
    if is_surplus(study, trial.number, n_trials):  # a worker on another machine was faster
        trial.set_user_attr("surplus", True)
        study.tell(trial, state=TrialState.FAIL)
        return "wait", None
    return "run", trial
