"""The train stage on several processes: ``torchrun``, or ``NANOMOE_NPROC`` under DVC.

``torchrun --standalone --nproc_per_node=N -m pipeline.train ...`` trains one cell with
DistributedDataParallel on N processes (N GPUs, or N CPU processes over gloo); multi-node
``torchrun`` works the same way. ``NANOMOE_NPROC=N dvc repro`` makes every train stage
relaunch itself under torchrun with N processes on this machine: an environment variable,
not a param, so changing the process count never makes a trained cell stale (the global
batch, and so every number, does not depend on it).
"""

from __future__ import annotations

import os
import sys

import torch

from nanomoe import distributed
from nanomoe.config import TrainConfig
from nanomoe.device import resolve_device
from pipeline.stage import ParamsError

NPROC_ENV = "NANOMOE_NPROC"


def nproc_setting() -> int:
    """Processes asked for through NANOMOE_NPROC (1 when unset)."""
    text = os.environ.get(NPROC_ENV, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise ParamsError(
            f"{NPROC_ENV}: must be a positive integer (processes per node), got {text!r}; "
            f"set it to the number of GPUs, or unset it for one process"
        )
    return int(text)


def check_split(batch_size: int, world: int) -> None:
    """Every rank takes an equal slice of the global batch: ``world`` must divide it."""
    try:
        distributed.local_slice(batch_size, world, 0)
    except ValueError as err:
        raise ParamsError(f"params.yaml: train.{err}") from None


def relaunch(nproc: int, argv: list[str]) -> None:
    """Replace this process with torchrun running the same command on ``nproc`` processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "pipeline.train", *argv]
    print(f"{NPROC_ENV}={nproc}: torchrun on {nproc} processes", flush=True)
    os.execv(sys.executable, cmd)


def launch_cell(train_cfg: TrainConfig, argv: list[str] | None) -> distributed.Launch:
    """Where this process stands: relaunched under torchrun when NANOMOE_NPROC asks for more
    processes than one (this call then does not return), in its process group under
    torchrun, alone otherwise. The batch split is checked before either."""
    launch, nproc = distributed.Launch.from_env(), nproc_setting()
    check_split(train_cfg.batch_size, max(launch.world_size, nproc))
    if launch.world_size == 1 and nproc > 1:
        relaunch(nproc, sys.argv[1:] if argv is None else argv)
    distributed.init(launch, resolve_device(train_cfg.device, launch.local_rank))
    return launch


def from_main(value):
    """Rank 0's ``value`` on every rank (one process: ``value`` itself)."""
    if not distributed.is_distributed():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
