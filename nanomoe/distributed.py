"""Data parallelism across processes started by ``torchrun``, and the few collectives the
model and trainer need.

Every rank draws the same global batch of ``batch_size`` windows from the same seeded
generator and trains on its own contiguous slice of it, so N ranks see exactly the windows
one process would, in the same order: the tokens per step and the data order do not depend
on the process count, and a checkpoint written by N ranks resumes on any M that divides the
batch. DDP averages the gradients of equal slices, which is the gradient of the global mean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nanomoe.device import TORCH


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_sum(t: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """``t`` summed over ranks. ``differentiable``: the gradient flows back to every rank's
    input (an all-reduce of the gradients), as a loss over the global batch needs."""
    if not is_distributed():
        return t
    if differentiable:
        if TORCH >= (2, 13):
            from torch.distributed._functional_collectives import all_reduce  # traceable

            return all_reduce(t, "sum", dist.group.WORLD)
        import torch.distributed.nn.functional as dist_nn  # its autograd before torch 2.13

        return dist_nn.all_reduce(t, op=dist.ReduceOp.SUM)
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def global_mean(t: torch.Tensor) -> torch.Tensor:
    """``t`` averaged over ranks (no gradient)."""
    return global_sum(t.detach()) / world_size()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank: every rank gets the same answer, so all of them
    stop at the same step when one is asked to (one process: ``flag``)."""
    if not is_distributed():
        return flag
    t = torch.tensor([float(flag)], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _collective_device() -> torch.device:
    """Where a collective's tensor must live: the rank's GPU under nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a ``torchrun`` launch (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Launch:
        """From torchrun's RANK, LOCAL_RANK and WORLD_SIZE; one process without them."""
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        return cls(
            int(os.environ["RANK"]),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ["WORLD_SIZE"]),
        )


def init(launch: Launch, device: torch.device) -> None:
    """Join the process group of a multi-process launch (nccl on CUDA, gloo on the CPU)."""
    if launch.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, device_id=device if backend == "nccl" else None)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel (gradients averaged over ranks in buckets, as the
    backward goes) inside a process group of several ranks; else ``model`` itself."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_slice(batch_size: int, world: int, rank_: int) -> slice:
    """This rank's rows of a global batch; ``world`` must divide ``batch_size``."""
    if batch_size % world:
        counts = ", ".join(str(n) for n in range(1, batch_size + 1) if batch_size % n == 0)
        raise ValueError(
            f"batch_size: {batch_size} does not split over {world} processes; "
            f"run a process count that divides it ({counts})"
        )
    per = batch_size // world
    return slice(rank_ * per, (rank_ + 1) * per)
