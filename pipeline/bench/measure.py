"""What every benchmark measures alike, ``pipeline.bench.gpu_check`` included: the device's queued
work, the matmul peak that MFU divides by, and the tokens to train on.

Imports torch, numpy and ``nanomoe.data`` only: ``gpu_check`` runs on a bare CUDA machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from nanomoe.data import load_meta, load_split

CPU = torch.device("cpu")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(
    n: int = 1024,
    repeats: int = 5,
    device: torch.device = CPU,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Best-of GEMM throughput at the threads torch uses: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 5)
    return 2 * n**3 / best / 1e9


def load_tokens(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(train, val, vocab size, source): the prepared splits in ``folder`` (shown as
    ``name``), else synthetic random tokens."""
    if (folder / "meta.json").exists():
        meta = load_meta(folder)
        train, val = (np.asarray(load_split(folder, s)) for s in ("train", "val"))
        return train, val, meta["vocab_size"], name
    ids = np.random.default_rng(0).integers(0, 65, 200_000).astype(np.uint16)
    return ids[:180_000], ids[180_000:], 65, f"synthetic random tokens (no {name})"
