"""What a data-parallel rank feeds its model: the token ids of every forward call of one
training step, one periodic eval and one full-split eval of a tiny dense GPT.

``python tests/_ddp_ranks.py OUT`` under ``torchrun`` saves each rank's calls to
``OUT/rank<N>.pt``; ``model_inputs()`` in a process alone gives one process's calls, to
compare with. The losses cannot tell a rank that trains on its slice from one that trains on
the whole global batch (every rank then sees the same mean); the inputs can. Not a test
module: test_ddp.py runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from nanomoe import distributed
from nanomoe.config import GPTConfig, TrainConfig
from nanomoe.model import GPT
from nanomoe.trainer import Trainer

VOCAB, BLOCK, BATCH = 11, 8, 4
# 150 windows of 8 in val: 3 full-split batches of 64 (the trainer's minimum), taken in turns
SPLITS = (1600, 1201)


def model_inputs() -> dict[str, list[torch.Tensor]]:
    """{"train", "eval", "full"}: the idx of each forward call this process makes in one
    training step, one ``estimate_loss`` and one ``full_split_loss`` of the val split."""
    data = np.random.default_rng(0).integers(0, VOCAB, sum(SPLITS)).astype(np.uint16)
    train, val = data[: SPLITS[0]], data[SPLITS[0] :]
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16)
    model = GPT(config.replace(dropout=0.0))
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    cfg = TrainConfig(batch_size=BATCH, max_iters=1, warmup_iters=0, eval_interval=1,
                      eval_iters=2, device="cpu", progress=False)  # fmt: skip
    trainer = Trainer(model, train, val, cfg)
    out = {}
    for name, call in (
        ("train", lambda: trainer.train_step(cfg.learning_rate)),
        ("eval", trainer.estimate_loss),
        ("full", lambda: trainer.full_split_loss(val)),
    ):
        call()
        out[name], seen[:] = list(seen), []
    return out


if __name__ == "__main__":
    launch = distributed.Launch.from_env()
    distributed.init(launch, torch.device("cpu"))
    try:
        torch.save(model_inputs(), Path(sys.argv[1]) / f"rank{launch.rank}.pt")
    finally:
        distributed.shutdown()
