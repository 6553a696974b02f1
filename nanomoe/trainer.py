"""The training loop: one trainer, many drivers (the DVC stage, Optuna, a notebook).

AdamW with decoupled weight decay on matrices only, linear warmup then cosine decay to
``min_lr``, gradient clipping, periodic eval on fixed batches, a final eval over the whole
validation split, atomic checkpoints and exact resume (what a checkpoint holds: in
``checkpoint.py``). Metrics leave through ``Callback``s, so MLflow and Optuna plug in from
outside without this module knowing them.

Determinism: the data order comes from a generator seeded with ``seed``; dropout draws from
the global torch RNG, seeded here too; both states are saved in every checkpoint, and eval
consumes neither, so a resumed run replays the uninterrupted one bit for bit on the CPU.

Data parallelism: under ``torchrun`` (a process group set up with ``distributed.init``)
each rank trains on its slice of the same global batch through DDP, so the global batch,
the data order and the losses stay those of one process (see ``distributed.py``). Every rank
evaluates its slice and the means are reduced; only rank 0 saves checkpoints, shows progress
and calls the callbacks.

Preemption: with ``stop`` (a callable), the trainer asks it after every step and, when it
says so (on any rank), saves a checkpoint at that step and raises ``Preempted`` (stops.py).
Fault injection for the resume tests lives in ``faults.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nanomoe import distributed
from nanomoe.checkpoint import resume_training, save_training
from nanomoe.config import TrainConfig
from nanomoe.data import get_batch
from nanomoe.device import autocast_for, resolve_device, resolve_dtype
from nanomoe.evaluate import batches_loss, full_split_loss
from nanomoe.faults import inject_fault
from nanomoe.model import GPT
from nanomoe.moe import MoEStats, RoutingMeter
from nanomoe.schedule import lr_at
from nanomoe.stops import NonFiniteLossError, Preempted

__all__ = ["Callback", "NonFiniteLossError", "Preempted", "TrainResult", "Trainer", "set_seed"]


class Callback:
    """Override what you need. Raising from a hook stops training (Optuna prunes this way)."""

    def on_eval(self, step: int, metrics: dict[str, float], moe: MoEStats | None) -> None:
        """``metrics``: train_loss, val_loss (eval batches), lr, tokens_per_sec; ``moe``:
        routing statistics averaged over the training steps since the previous eval (None
        without MoE, and at step 0)."""

    def on_end(self, result: TrainResult) -> None:
        """After the final full-split eval."""


@dataclass
class TrainResult:
    steps: int
    val_loss: float  # final: full validation split at the end, pure cross-entropy
    best_val_loss: float  # best periodic estimate (eval batches) during training, as nanoGPT
    best_step: int  # the eval step that gave best_val_loss
    train_loss: float  # fixed train batches at the last eval
    tokens: int  # trained on, over every session
    flops_per_token: float  # training FLOPs per token (GPT.flops_per_token)
    tokens_per_sec: float
    wall_s: float
    params_total: int
    params_active: int
    history: list[dict] = field(default_factory=list)  # step, train_loss, val_loss, val_bpb, lr
    moe: MoEStats | None = None  # routing over the last eval interval; None without MoE
    # bits per UTF-8 byte (NaN without token_bytes): final, full split; best periodic estimate
    val_bpb: float = math.nan
    best_val_bpb: float = math.nan


def set_seed(seed: int) -> None:
    """Seed every RNG the model's construction and training draw from."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


class Trainer:
    def __init__(
        self,
        model: GPT,
        train_data: np.ndarray,
        val_data: np.ndarray,
        config: TrainConfig,
        callbacks: tuple[Callback, ...] | list[Callback] = (),
        checkpoint_path: str | Path | None = None,
        checkpoint_extra: dict | None = None,
        token_bytes: np.ndarray | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """``token_bytes``: the raw UTF-8 bytes each token id stands for (the tokenizer's
        ``token_bytes()``), for losses in bits per byte too. ``stop``: asked after every
        step whether to save a checkpoint there and raise ``Preempted``."""
        self.cfg, self.stop = config, stop
        self.token_bytes = None if token_bytes is None else torch.as_tensor(token_bytes)
        self.device = resolve_device(config.device, distributed.Launch.from_env().local_rank)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.model = model.to(self.device)
        self.is_main = distributed.rank() == 0
        world = distributed.world_size()
        self.rows = distributed.local_slice(config.batch_size, world, distributed.rank())
        self.train_data, self.val_data = train_data, val_data
        self.callbacks = list(callbacks)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.checkpoint_extra = checkpoint_extra or {}
        block = model.config.block_size
        for name, split in (("train", train_data), ("val", val_data)):
            if len(split) <= block:
                raise ValueError(
                    f"{name} split has {len(split)} tokens; needs more than block_size={block}"
                )

        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(
            model.optimizer_groups(config.weight_decay),
            lr=config.learning_rate,
            betas=(config.beta1, config.beta2),
            fused=fused,
        )
        wrapped = distributed.wrap(model, self.device)  # DDP under torchrun, else the model
        # One graph per model (MoE included), and an error rather than a silent graph break;
        # DDP's compiler splits the graph at its gradient buckets, so not there.
        self.forward = torch.compile(wrapped, fullgraph=world == 1) if config.compile else wrapped

        torch.manual_seed(config.seed + distributed.rank())  # each rank its own dropout masks
        self.data_gen = torch.Generator().manual_seed(config.seed)
        eval_gen = torch.Generator().manual_seed(config.seed + 1)
        self.eval_batches = {
            name: [
                get_batch(split, config.batch_size, block, eval_gen)
                for _ in range(config.eval_iters)
            ]
            for name, split in (("train", train_data), ("val", val_data))
        }
        self.step = 0
        self.history: list[dict] = []
        self.routing = RoutingMeter()  # training steps since the last eval
        self.interval_moe: MoEStats | None = None  # the mean over the last full interval
        self.train_time, self.tokens, self.wall_s = 0.0, 0, 0.0  # so far, over every session

    # --- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, path: Path | None = None) -> None:
        """A checkpoint of the run so far at ``path`` (default: ``checkpoint_path``); rank 0
        only, and nothing without a path. Its contents: ``checkpoint.save_training``."""
        path = path or self.checkpoint_path
        if path is not None and self.is_main:
            save_training(self, path)

    def resume(self, path: str | Path) -> None:
        """Continue the run saved at ``path``: ``checkpoint.resume_training``."""
        resume_training(self, path)

    # --- evaluation ------------------------------------------------------------------------

    def autocast(self):
        return autocast_for(self.device, self.dtype)

    def estimate_loss(self) -> dict[str, float]:
        """train_loss and val_loss on the fixed eval batches, and val_bpb with token_bytes."""
        self.model.eval()
        out = {}
        for name, batches in self.eval_batches.items():
            sizes = self.token_bytes if name == "val" else None
            loss, bpb = batches_loss(
                self.forward, batches, self.rows, self.device, self.autocast, sizes
            )
            out[f"{name}_loss"] = loss
            if sizes is not None:
                out["val_bpb"] = bpb
        self.model.train()
        return out

    def full_split_loss(self, data: np.ndarray) -> tuple[float, float]:
        """(mean cross-entropy, bits per byte) over every token of ``data``: the numbers the
        report quotes."""
        self.model.eval()
        block, batch = self.model.config.block_size, max(64, self.cfg.batch_size)
        out = full_split_loss(
            self.forward, data, block, batch, self.device, self.autocast, self.token_bytes
        )
        self.model.train()
        return out

    # --- the loop --------------------------------------------------------------------------

    def _eval(self, lr: float, tokens_per_sec: float) -> dict[str, float]:
        metrics = self.estimate_loss()
        if self.routing.total is not None:  # every rank's routing, averaged
            self.routing.total = distributed.global_mean(self.routing.total)
        moe = self.routing.mean()  # training routing since the last eval, not eval batches
        self.routing.reset()
        self.interval_moe = moe or self.interval_moe
        self.history.append({"step": self.step, **metrics, "lr": lr})
        metrics = {**metrics, "lr": lr, "tokens_per_sec": tokens_per_sec}
        interval = self.cfg.checkpoint_interval or self.cfg.eval_interval
        if self.step % interval == 0 or self.step == self.cfg.max_iters:
            self.save_checkpoint()
            inject_fault("kill-after-checkpoint", self.step)
        for cb in self.callbacks if self.is_main else ():
            cb.on_eval(self.step, metrics, moe)
        return metrics

    def train_step(self, lr: float) -> float:
        """One optimizer step at learning rate ``lr``; returns the (pure) training loss."""
        cfg, block = self.cfg, self.model.config.block_size
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(self.train_data, cfg.batch_size, block, self.data_gen)  # global batch
        x, y = x[self.rows], y[self.rows]  # this rank's slice: all of it in one process
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with self.autocast():
            _, loss = self.forward(x, y)
            objective = loss + self.model.aux_loss if self.model.config.moe else loss
        self.routing.add(self.model.routing())  # None without MoE
        loss_value = distributed.global_mean(loss).item()  # the same on every rank
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(self.step, loss_value)
        objective.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_value

    def fit(self, resume_from: str | Path | None = None) -> TrainResult:
        """Train to ``max_iters``; with ``resume_from``, continue from that checkpoint."""
        cfg, block = self.cfg, self.model.config.block_size
        if resume_from is not None:
            self.resume(resume_from)
        self.model.train()
        start_wall, wall_before = time.perf_counter(), self.wall_s
        if self.step == 0 and not self.history:  # a step-0 checkpoint already has it
            self._eval(lr_at(0, cfg), 0.0)
        quiet = not (cfg.progress and self.is_main)
        bar = tqdm(
            total=cfg.max_iters,
            initial=self.step,
            disable=quiet,
            desc=self.model.config.variant,
            dynamic_ncols=True,
        )
        while self.step < cfg.max_iters:
            t0 = time.perf_counter()
            lr = lr_at(self.step, cfg)
            loss_value = self.train_step(lr)
            self.train_time += time.perf_counter() - t0
            self.tokens += cfg.batch_size * block
            inject_fault("kill", self.step, until=self.stop)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.1e}", refresh=False)
            if self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters:
                self.wall_s = wall_before + time.perf_counter() - start_wall
                metrics = self._eval(lr, self.tokens / max(self.train_time, 1e-9))
                bar.set_postfix(val=f"{metrics['val_loss']:.3f}", refresh=False)
            if self.stop is not None and distributed.any_rank(self.stop()):
                self.wall_s = wall_before + time.perf_counter() - start_wall
                self.save_checkpoint()
                raise Preempted(self.step)
        bar.close()

        total, active = self.model.num_params()
        finite = [r for r in self.history if math.isfinite(r["val_loss"])] or self.history
        best = min(finite, key=lambda r: r["val_loss"])  # the first of equals
        bpbs = [r["val_bpb"] for r in self.history if math.isfinite(r.get("val_bpb", math.nan))]
        val_loss, val_bpb = self.full_split_loss(self.val_data)
        result = TrainResult(
            steps=self.step,
            val_loss=val_loss,
            best_val_loss=best["val_loss"],
            best_step=best["step"],
            train_loss=self.history[-1]["train_loss"],
            tokens=self.tokens,
            flops_per_token=self.model.flops_per_token(),
            tokens_per_sec=self.tokens / max(self.train_time, 1e-9),
            wall_s=wall_before + time.perf_counter() - start_wall,
            params_total=total,
            params_active=active,
            history=list(self.history),
            moe=self.interval_moe,
            val_bpb=val_bpb,
            best_val_bpb=min(bpbs, default=math.nan),
        )
        for cb in self.callbacks if self.is_main else ():
            cb.on_end(result)
        return result
