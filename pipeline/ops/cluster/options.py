"""The SLURM options a user passes through ``submit`` and ``tune``, as sbatch takes them."""

from __future__ import annotations

import argparse
import re

from pipeline.stage import StageError

PASSED = ("partition", "time", "gres", "cpus_per_task", "account", "qos")


def add_slurm_options(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("SLURM options, passed to sbatch as they are")
    g.add_argument("--partition", "-p", help="the partition (default: the cluster's)")
    g.add_argument("--time", "-t", help="each task's time limit, e.g. 2:00:00")
    g.add_argument("--gres", help="e.g. gpu:1; gpu:N with N > 1 trains each cell on N processes")
    g.add_argument("--cpus-per-task", "-c", type=int, help="cores per task (its threads)")
    g.add_argument("--account", "-A")
    g.add_argument("--qos")
    g.add_argument(
        "--sbatch-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="any other sbatch option, once per option: --sbatch-arg=--mem=8G",
    )


def sbatch_options(a: argparse.Namespace) -> list[str]:
    """The user's options as sbatch arguments."""
    out = []
    for name in PASSED:
        value = getattr(a, name)
        if value is not None:
            out.append(f"--{name.replace('_', '-')}={value}")
    return out + list(a.sbatch_arg)


def gpus(gres: str | None) -> int:
    """The GPUs a task asks for in ``--gres`` (gpu:N or gpu:type:N; gpu alone is 1)."""
    if not gres:
        return 0
    for item in gres.split(","):
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        if len(parts) == 1:
            return 1
        if not re.fullmatch(r"\d+", parts[-1]):
            raise StageError(f"--gres {gres}: the GPU count is not a number; e.g. --gres gpu:2")
        return int(parts[-1])
    return 0
