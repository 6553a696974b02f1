"""``--jobs``: several workers of one study on this machine, started by one command.

These models are too small for two threads to keep two cores busy: on the 2-core CPU here a
full-model step takes 116-170 ms on 2 threads, and two single-threaded workers side by side
train 1.4-1.7x the steps per second of one (README, "Tuning"). So on the CPU ``--jobs auto``
runs one single-threaded worker per core, up to ``MAX_AUTO_JOBS``; on a GPU, one worker.

The command's own process is one worker; it starts the others as helper processes of the
same command (``--jobs 1``, the environment variable ``HELPER_ENV`` set, so they leave the
summary, the report and the study's MLflow parent run to it), which die with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

HELPER_ENV = "NANOMOE_TUNE_HELPER"
MAX_AUTO_JOBS = 4


def is_helper() -> bool:
    return os.environ.get(HELPER_ENV) == "1"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def resolve_jobs(jobs: str, device: str) -> int:
    """``auto``: one worker per core on the CPU (at most MAX_AUTO_JOBS), one on a GPU."""
    if jobs != "auto":
        return int(jobs)
    from nanomoe.device import resolve_device

    return 1 if resolve_device(device).type != "cpu" else max(1, min(cores(), MAX_AUTO_JOBS))


def _die_with_parent() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies


def start_helpers(
    args: list[str], extra_env: dict[str, str], n: int, threads: int
) -> list[subprocess.Popen]:
    """``n`` helper workers running ``python -m pipeline.tune <args> --jobs 1``, with
    ``extra_env`` (a database URL, kept off the command line) in their environment."""
    env = {**os.environ, **extra_env, HELPER_ENV: "1", "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "pipeline.tune", *args, "--jobs", "1"]
    linux = sys.platform.startswith("linux")
    return [
        subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent if linux else None)
        for _ in range(n)
    ]


def stop_helpers(helpers: list[subprocess.Popen], wait: bool) -> list[int]:
    """Wait for the helpers (``wait``), or stop them (SIGTERM: their trials end FAIL and
    are run again later); return their exit codes."""
    for p in helpers:
        if not wait and p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return [p.wait() for p in helpers]
