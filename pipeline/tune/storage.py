"""Where a study lives, and the locks and heartbeats that let many workers share it.

- A JournalStorage file (default ``experiments/tune/journal.log``), which the processes of
  one machine share through an flock(2) lock; or any SQLAlchemy URL (``postgresql://...``)
  for many machines, with Optuna heartbeats so that a dead machine's trials are failed too.
- ``local_lock``: an exclusive lock between the processes of this machine, released by the
  kernel if its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

HEARTBEAT_S = 20  # RDB storages: a trial's process records a heartbeat this often
GRACE_S = 120  # ... and a trial silent this long is failed


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
