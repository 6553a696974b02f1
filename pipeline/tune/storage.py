"""Where a study lives, and the locks and heartbeats that let many workers share it.

- A JournalStorage file (default ``experiments/tune/journal.log``), which the processes of
  one machine share through an flock(2) lock; or any SQLAlchemy URL (``postgresql://...``)
  for many machines, with Optuna heartbeats (tune.heartbeat_interval, tune.heartbeat_grace)
  so that a dead machine's trials are failed too.
- ``local_lock``: an exclusive lock between the processes of this machine, released by the
  kernel if its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

RDB_OPEN_TRIES = 5


def open_storage(
    url: str | None,
    default_journal: Path,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """A JournalStorage file for None or a path; an RDBStorage for a URL, with heartbeats
    every ``heartbeat_interval`` seconds (tune.heartbeat_interval) when given, and a trial
    silent ``grace_period`` seconds (tune.heartbeat_grace) failed, then ``on_stale`` called."""
    if url and "://" in url:
        return _rdb_storage(
            url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=on_stale,
        )
    path = Path(url) if url else default_journal
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(path), lock_obj=FlockLock(f"{path}.lock"))
    return optuna.storages.JournalStorage(backend)


def _rdb_storage(url: str, **kwargs) -> optuna.storages.RDBStorage:
    """An RDBStorage, retried a few times: workers that start together on a new database
    race to create its tables, which Optuna does not lock, and all but one fail with an
    IntegrityError or ProgrammingError (duplicate table or type; seen on PostgreSQL)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for _ in range(RDB_OPEN_TRIES - 1):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (IntegrityError, ProgrammingError):
            time.sleep(0.2 + random.random())  # then the tables exist, or one more race
    return optuna.storages.RDBStorage(url, **kwargs)


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
