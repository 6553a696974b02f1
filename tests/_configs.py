"""Tiny configs shared by the model-library tests (not a test module: any test may import it)."""

from __future__ import annotations

from nanomoe.config import TrainConfig


def train_config(**overrides) -> TrainConfig:
    """A TrainConfig for tiny in-process runs on the CPU: 12 steps of batch 4, eval every 4,
    no progress bar; ``overrides`` replace any field."""
    kw = dict(
        batch_size=4,
        max_iters=12,
        learning_rate=3e-3,
        min_lr=3e-4,
        warmup_iters=3,
        eval_interval=4,
        eval_iters=2,
        seed=11,
        device="cpu",
        progress=False,
    )
    kw.update(overrides)
    return TrainConfig(**kw)
