"""Where the model runs, and in which precision.

``device: auto`` picks CUDA when there is a GPU, else the CPU; under ``torchrun`` each rank
takes the GPU of its local rank. ``dtype: auto`` trains under bf16 autocast on CUDA and in
fp32 elsewhere; ``bf16`` asks for bf16 autocast on any device, the CPU included, so the bf16
path is testable without a GPU. The router and the losses stay in fp32 inside the model.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = ("auto", "fp32", "bf16")
TORCH = torch.torch_version.TorchVersion(torch.__version__)  # compares with (2, 13)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``local_rank``: this process's rank on its node, which picks its GPU for auto/cuda."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    if name == "auto":
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but CUDA is not available; use auto or cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype ``name`` means on ``device``: fp32 means no autocast."""
    if name not in DTYPES:
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {name!r}")
    if name == "bf16" or (name == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype = torch.float32):
    """bf16 autocast for ``dtype=torch.bfloat16``, on the CPU or CUDA; nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def runtime(name: str, dtype: str, world_size: int = 1) -> dict:
    """What a run's numbers can hang on besides its config, data and seed: the device (the
    GPU's model on CUDA), the autocast dtype, torch's version, the processes it trains on
    (DDP ranks) and each one's intra-op threads. A cache keyed by config and data (DVC's run
    cache) cannot tell these apart, so each result records them."""
    device = resolve_device(name)
    model = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {
        "device": model,
        "dtype": "bf16" if resolve_dtype(dtype, device) == torch.bfloat16 else "fp32",
        "torch_version": torch.__version__,
        "nproc": world_size,
        "threads": torch.get_num_threads(),
    }
