"""Checkpoints: what a training run saves, and the model it holds.

A checkpoint is a plain dict saved with ``torch.save`` (atomically): the model and optimizer
states, both configs, the F-gram table, the step, the eval history, the RNG states and the
time and tokens trained so far, so a resumed run replays the uninterrupted one. Loading uses
``weights_only=True``: a checkpoint cannot run code.

A *model file* (``model_file``) is the part of a checkpoint that rebuilds the trained model:
its weights, config, vocabulary and F-gram table, without the optimizer state, RNG states or
history (a third of the checkpoint's size). It loads and samples like a checkpoint.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from nanomoe.config import GPTConfig
from nanomoe.model import GPT


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


MODEL_KEYS = ("model", "model_config", "fgram_ids", "chars", "step")


def model_file(ckpt: dict) -> bytes:
    """The bytes of ``ckpt``'s model file: weights, config, vocabulary, F-gram table, step."""
    buf = io.BytesIO()
    torch.save({k: ckpt[k] for k in MODEL_KEYS if k in ckpt}, buf)
    return buf.getvalue()


def model_from_checkpoint(ckpt: dict) -> GPT:
    model = GPT(GPTConfig.from_dict(ckpt["model_config"]), fgrams=ckpt.get("fgram_ids"))
    model.load_state_dict(ckpt["model"])
    return model
