"""A real one-node SLURM for the cluster tests: the one ``.ci/slurm up`` starts (``make
slurm-up``; .ci/run does it before the suite), found through $SLURM_CONF or its default
folder. Under CI (``CI=true``) a missing SLURM fails the tests that need it; elsewhere they
skip, saying why. Not a test module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DEFAULT_CONF = Path(os.environ.get("NANOMOE_SLURM_DIR", "/tmp/nanomoe-slurm")) / "slurm.conf"


def no_slurm(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI must run the SLURM tests: .ci/slurm up (make slurm-up)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def slurm() -> str:
    """The slurm.conf of a SLURM that answers; sets SLURM_CONF for this process and its
    children."""
    if shutil.which("sbatch") is None:
        no_slurm("no sbatch on PATH (apt-get install slurm-wlm munge; make slurm-up)")
    conf = os.environ.get("SLURM_CONF") or (str(DEFAULT_CONF) if DEFAULT_CONF.exists() else "")
    if not conf:
        no_slurm(f"no SLURM_CONF and no {DEFAULT_CONF}: start one with make slurm-up")
    os.environ["SLURM_CONF"] = conf
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    if "UP" not in ping.stdout:
        no_slurm(f"slurmctld of {conf} does not answer ({ping.stdout.strip()}): make slurm-up")
    return conf


def scontrol(*args: str) -> str:
    out = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"scontrol {' '.join(args)}: {out.stderr}"
    return out.stdout
