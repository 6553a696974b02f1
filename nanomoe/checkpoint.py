"""Checkpoints: what a training run saves, and the model it holds.

A checkpoint is a plain dict saved with ``torch.save`` (atomically): the model and optimizer
states, both configs, the F-gram table, the step, the eval history, the RNG states and the
time and tokens trained so far, so a resumed run replays the uninterrupted one. Loading uses
``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nanomoe.config import GPTConfig
from nanomoe.model import GPT


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def model_from_checkpoint(ckpt: dict) -> GPT:
    model = GPT(GPTConfig.from_dict(ckpt["model_config"]), fgrams=ckpt.get("fgram_ids"))
    model.load_state_dict(ckpt["model"])
    return model
