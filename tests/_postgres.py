"""A real PostgreSQL server, started by the tests that need one and stopped after them.

The server runs in a short folder under /tmp (a Unix socket path must stay under 107 bytes,
and pytest's own temp dirs are 0700 under root), listens on that folder's Unix socket only
(``listen_addresses=''``: no TCP port at all), trusts local connections, and skips fsync. Tests
run as root here, and ``initdb`` refuses root, so the server runs as the image's ``postgres``
user. Under CI (``CI=true``) a missing server binary fails the tests that need it; elsewhere
they skip, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def server_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: $PG_BIN, then PATH, then Debian's layout."""
    candidates = [os.environ.get("PG_BIN", "")]
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))
    candidates += sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name))[::-1]
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


class Postgres:
    """One server in its own folder; ``url(db)`` names a database on it for SQLAlchemy."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # /tmp/pgXXXXXXXX: short
        self.data = self.dir / "data"
        self.as_user: dict = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _run(self, *args: str) -> None:
        out = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            cwd=self.dir,
            **self.as_user,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stdout}{out.stderr}")

    def start(self) -> Postgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-k {self.dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w",
                  "start")  # fmt: skip
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.dir}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host=str(self.dir), user="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace") if path.exists() else ""


def no_server() -> None:
    """No server binary: the test fails under CI (``CI=true``), else skips, saying why."""
    why = f"no PostgreSQL server binary (initdb, pg_ctl) on PATH, in $PG_BIN or {PG_BIN_GLOB}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI must run the PostgreSQL tests: install postgresql")
    pytest.skip(why)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for this test session (one per xdist worker)."""
    bindir = server_bin()
    if bindir is None:
        no_server()
    server = Postgres(bindir).start()
    try:
        yield server
    finally:
        server.stop()
