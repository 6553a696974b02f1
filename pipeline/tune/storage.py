"""Where a study lives, and the locks and heartbeats that let many workers share it.

- A JournalStorage file (default ``experiments/tune/journal.log``), which the processes of
  one machine share through an flock(2) lock; or any SQLAlchemy URL (``postgresql://...``)
  for many machines, with Optuna heartbeats (tune.heartbeat_interval, tune.heartbeat_grace)
  so that a dead machine's trials are failed too.
- ``open_study``: the study in it, created or required, and held to the settings it was
  started with (its fingerprint: inputs.py).
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

from pipeline.stage import StageError

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


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    pruner: optuna.pruners.BasePruner,
    fingerprint: dict,
    where: str,
    create: bool,
) -> optuna.Study:
    """Study ``name``: created if need be when ``create`` (a search), else one that exists
    (``--confirm`` alone); ``where`` names the storage in errors. The first worker stores
    the settings' ``fingerprint`` in it and every later one must bring the same, so that no
    trial joins a study run under other settings. Call under the local lock."""
    if create:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="minimize",
            load_if_exists=True,
            pruner=pruner,
        )
        if not study.metric_names:  # optuna-dashboard's label for the value
            study.set_metric_names(["val_bpb"])
    else:
        study = load_study(name, storage, where, pruner, hint="; run --trials N first")
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", fingerprint)
    elif study.user_attrs["settings"] != fingerprint:
        stored = study.user_attrs["settings"]
        differ = sorted(k for k in fingerprint if stored.get(k) != fingerprint[k])
        raise StageError(
            f"study {name!r} was run with other settings ({', '.join(differ)} differ "
            "from params.yaml/--seed); use a new --study-name, or restore them"
        )
    return study


def load_study(
    name: str,
    storage: optuna.storages.BaseStorage,
    where: str,
    pruner: optuna.pruners.BasePruner | None = None,
    hint: str = "",
) -> optuna.Study:
    """Study ``name``, which must exist: else an error naming ``where`` and ``hint``."""
    try:
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    except KeyError:
        raise StageError(f"no study named {name!r} in {where}{hint}") from None


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
