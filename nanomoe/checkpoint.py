"""Checkpoints: what a training run saves, how a run resumes from one, and the model it holds.

A checkpoint is a plain dict saved with ``torch.save`` (atomically): the model and optimizer
states, both configs, the F-gram table, the step, the eval history, the RNG states and the
time and tokens trained so far, so a resumed run replays the uninterrupted one. Writing and
reading it live side by side here, so the two cannot drift apart. Loading uses
``weights_only=True``: a checkpoint cannot run code.

A *model file* (``model_file``) is the part of a checkpoint that rebuilds the trained model:
its weights, config, vocabulary and F-gram table, without the optimizer state, RNG states or
history (a third of the checkpoint's size). It loads and samples like a checkpoint.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import torch

from nanomoe import distributed
from nanomoe.atomic import atomic_torch_save
from nanomoe.config import GPTConfig, TrainConfig
from nanomoe.model import GPT
from nanomoe.moe import MoEStats, RoutingMeter


class Run(Protocol):
    """What a checkpoint saves and restores of a training run: ``nanomoe.trainer.Trainer``
    has all of it. (Declared here, so the checkpoint needs no import of the trainer.)"""

    model: GPT
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    device: torch.device
    step: int
    history: list[dict]
    data_gen: torch.Generator
    train_time: float
    tokens: int
    wall_s: float
    routing: RoutingMeter
    interval_moe: MoEStats | None
    checkpoint_extra: dict


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def save_training(trainer: Run, path: Path) -> None:
    """Everything ``resume_training`` needs to replay ``trainer``'s run from here on, plus
    the trainer's ``checkpoint_extra`` (the vocabulary, say), written atomically."""
    m = trainer.model
    atomic_torch_save(
        {
            "model": m.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "model_config": m.config.to_dict(),
            "train_config": trainer.cfg.to_dict(),
            "fgram_ids": m.fgram_ids,
            "step": trainer.step,
            "history": trainer.history,
            "rng_torch": torch.get_rng_state(),
            "rng_data": trainer.data_gen.get_state(),
            "train_time": trainer.train_time,
            "tokens": trainer.tokens,
            "wall_s": trainer.wall_s,
            "routing": trainer.routing.state_dict(),
            "interval_moe": asdict(trainer.interval_moe) if trainer.interval_moe else None,
            **trainer.checkpoint_extra,
        },
        path,
    )


def resume_training(trainer: Run, path: str | Path) -> None:
    """Put ``trainer`` back where ``save_training`` left its run: weights, optimizer, step,
    history, RNG streams, time and tokens so far, and the routing of the open interval."""
    ckpt = load_checkpoint(path, map_location=trainer.device)
    trainer.model.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.step = int(ckpt["step"])
    trainer.history = list(ckpt["history"])
    torch.set_rng_state(ckpt["rng_torch"].cpu())  # rank 0's; the others draw anew:
    if distributed.rank():  # a checkpoint holds one stream, and M ranks may resume it
        torch.manual_seed(trainer.cfg.seed + 1_000_003 * distributed.rank() + trainer.step)
    trainer.data_gen.set_state(ckpt["rng_data"].cpu())
    trainer.train_time, trainer.tokens, trainer.wall_s = (
        ckpt[k] for k in ("train_time", "tokens", "wall_s")
    )
    trainer.routing.load_state_dict(ckpt["routing"], trainer.device)
    trainer.interval_moe = MoEStats(**ckpt["interval_moe"]) if ckpt["interval_moe"] else None


MODEL_KEYS = ("model", "model_config", "fgram_ids", "chars", "tokenizer", "step")


def tokenizer_entry(tok) -> dict:
    """What a checkpoint holds of its tokenizer: ``tokenizer`` (its ``to_dict``), and for the
    character tokenizer ``chars`` too, as checkpoints always had."""
    entry = {"tokenizer": tok.to_dict()}
    return {"chars": tok.chars, **entry} if tok.kind == "char" else entry


def model_file(ckpt: dict) -> bytes:
    """The bytes of ``ckpt``'s model file: weights, config, vocabulary, F-gram table, step."""
    buf = io.BytesIO()
    torch.save({k: ckpt[k] for k in MODEL_KEYS if k in ckpt}, buf)
    return buf.getvalue()


def model_from_checkpoint(ckpt: dict) -> GPT:
    model = GPT(GPTConfig.from_dict(ckpt["model_config"]), fgrams=ckpt.get("fgram_ids"))
    model.load_state_dict(ckpt["model"])
    return model
