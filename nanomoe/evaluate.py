"""The two losses a run reports, each shared out over data-parallel ranks.

``batches_loss``: the mean cross-entropy on fixed batches (the periodic estimate, as
nanoGPT's); each rank scores its slice of every batch. ``full_split_loss``: the mean over
every token of a split (the number the report quotes); ranks take the windows in turns and
sum. In one process both are plain means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nanomoe import distributed
from nanomoe.data import iter_full_split

Forward = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


@torch.no_grad()
def batches_loss(
    forward: Forward,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    rows: slice,
    device: torch.device,
    autocast: Callable,
) -> float:
    """Mean loss over ``batches``, this rank taking ``rows`` of each (all rows in one process)."""
    losses = torch.zeros(len(batches), dtype=torch.float64, device=device)
    for i, (x, y) in enumerate(batches):
        with autocast():
            losses[i] = forward(x[rows].to(device), y[rows].to(device))[1]
    return distributed.global_mean(losses).mean().item()


@torch.no_grad()
def full_split_loss(
    forward: Forward,
    data: np.ndarray,
    block_size: int,
    batch_size: int,
    device: torch.device,
    autocast: Callable,
) -> float:
    """Mean cross-entropy over every token of ``data`` (``data.iter_full_split``)."""
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (loss sum, tokens)
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
    total = distributed.global_sum(total)
    return (total[0] / total[1]).item()
