"""The two losses a run reports, each shared out over data-parallel ranks, each also in bits
per UTF-8 byte.

``batches_loss``: the mean cross-entropy on fixed batches (the periodic estimate, as
nanoGPT's); each rank scores its slice of every batch. ``full_split_loss``: the mean over
every token of a split (the number the report quotes); ranks take the windows in turns and
sum. In one process both are plain means.

Bits per byte (``token_bytes``: the raw bytes each id stands for) are the summed nats of the
targets over ln 2 times their summed bytes: a unit no tokenizer can game. Targets of zero
bytes (the end-of-document token) are left out of both sums, as nanochat does. Without
``token_bytes`` it is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nanomoe import distributed
from nanomoe.data import iter_full_split

Forward = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


def _byte_sums(logits: torch.Tensor, y: torch.Tensor, sizes: torch.Tensor | None) -> torch.Tensor:
    """(nats of the zero-byte targets, bytes of the targets): what turns a sum of nats over
    targets into bits per byte. ``y`` -1: no target."""
    out = torch.zeros(2, dtype=torch.float64, device=y.device)
    if sizes is None:
        return out
    y = y.reshape(-1)
    scored = y != -1
    nbytes = torch.where(scored, sizes[y.clamp(min=0)], 0)
    empty = scored & (nbytes == 0)
    if empty.any():
        nats = F.cross_entropy(
            logits.float().view(-1, logits.size(-1))[empty], y[empty], reduction="sum"
        )
        out[0] = nats
    out[1] = nbytes.sum()
    return out


def bits_per_byte(nats: float, byte_sums: torch.Tensor) -> float:
    """``nats`` summed over every target, less the zero-byte targets', over ln 2 x bytes."""
    dropped, nbytes = byte_sums.tolist()
    return (nats - dropped) / (math.log(2) * nbytes) if nbytes else math.nan


@torch.no_grad()
def batches_loss(
    forward: Forward,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    rows: slice,
    device: torch.device,
    autocast: Callable,
    token_bytes: torch.Tensor | None = None,
) -> tuple[float, float]:
    """(mean loss, bits per byte) over ``batches``, this rank taking ``rows`` of each (all
    rows in one process)."""
    losses = torch.zeros(len(batches), dtype=torch.float64, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, zero-byte nats, bytes
    sizes = None if token_bytes is None else token_bytes.to(device)
    for i, (x, y) in enumerate(batches):
        x, y = x[rows].to(device), y[rows].to(device)
        with autocast():
            logits, loss = forward(x, y)
        losses[i] = loss
        if sizes is not None:
            flat = logits.float().view(-1, logits.size(-1))
            sums[0] += F.cross_entropy(flat, y.reshape(-1), reduction="sum")
            sums[1:] += _byte_sums(logits, y, sizes)
    loss = distributed.global_mean(losses).mean().item()
    sums = distributed.global_sum(sums)
    return loss, bits_per_byte(sums[0].item(), sums[1:])


@torch.no_grad()
def full_split_loss(
    forward: Forward,
    data: np.ndarray,
    block_size: int,
    batch_size: int,
    device: torch.device,
    autocast: Callable,
    token_bytes: torch.Tensor | None = None,
) -> tuple[float, float]:
    """(mean cross-entropy, bits per byte) over every token of ``data``
    (``data.iter_full_split``)."""
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (loss sum, tokens)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # zero-byte nats, bytes
    sizes = None if token_bytes is None else token_bytes.to(device)
    world, rank = distributed.world_size(), distributed.rank()
    for i, (x, y) in enumerate(iter_full_split(data, block_size, batch_size)):
        if i % world != rank:  # ranks take the batches in turns
            continue
        x, y = x.to(device), y.to(device)
        with autocast():
            logits, _ = forward(x)
        total[0] += F.cross_entropy(
            logits.float().view(-1, logits.size(-1)),
            y.reshape(-1),
            ignore_index=-1,
            reduction="sum",
        )
        total[1] += (y != -1).sum()
        sums += _byte_sums(logits, y, sizes)
    total, sums = distributed.global_sum(total), distributed.global_sum(sums)
    return (total[0] / total[1]).item(), bits_per_byte(total[0].item(), sums)
