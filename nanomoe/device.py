"""Where the model runs, and in which precision.

``auto`` picks CUDA when there is a GPU, else the CPU. On CUDA the forward runs under bf16
autocast (the router and the losses stay in fp32 inside the model); on the CPU in fp32.
"""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but CUDA is not available; use auto or cpu")
    return torch.device(name)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
