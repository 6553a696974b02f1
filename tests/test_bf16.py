"""bf16: ``train.dtype: bf16`` trains every variant under CPU autocast, finite and close to
fp32; the router stays in fp32 under autocast, its matmul included; ``auto`` means bf16 on
CUDA only."""

from __future__ import annotations

import math

import pytest
import torch
from _configs import train_config

from nanomoe.config import TrainConfig
from nanomoe.device import resolve_dtype
from nanomoe.moe import router_z_loss
from nanomoe.trainer import Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

STEPS = 30
# After 30 steps at lr 3e-3 the losses are 1.6-2.0 nats; bf16 keeps ~3 significant digits in
# the matmuls, and the runs drift apart step by step. Measured: |bf16 - fp32| <= 0.015
# over the 8 variants (rope+moe+fgram the most); the bound leaves room for other BLAS builds.
TOLERANCE = 0.05


def final_train_loss(tiny_model, tiny_splits, levels, dtype: str) -> tuple[float, list[float]]:
    model = tiny_model(levels, seed=3)
    cfg = train_config(max_iters=STEPS, eval_interval=STEPS, dtype=dtype)
    trainer = Trainer(model, *tiny_splits, cfg)
    losses = [trainer.train_step(cfg.learning_rate) for _ in range(STEPS)]
    return trainer.estimate_loss()["train_loss"], losses


def test_bf16_trains_every_variant_finite_and_close_to_fp32(tiny_model, tiny_splits, variant):
    bf16, losses = final_train_loss(tiny_model, tiny_splits, variant, "bf16")
    fp32, _ = final_train_loss(tiny_model, tiny_splits, variant, "fp32")
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.5  # it learns
    assert abs(bf16 - fp32) <= TOLERANCE, (bf16, fp32)
    assert bf16 != fp32  # the bf16 path really ran in bf16


def test_the_router_matmul_runs_in_fp32_under_autocast(tiny_model):
    model = tiny_model({"moe": True}).eval()
    layer = model.blocks[0].mlp
    x = torch.randn(2, 16, model.config.n_embd, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.float32  # the block's output keeps the residual stream's dtype
    fp32_logits = x.reshape(-1, x.shape[-1]) @ layer.router.weight.T
    bf16_logits = (x.reshape(-1, x.shape[-1]).bfloat16() @ layer.router.weight.T.bfloat16()).float()
    assert layer.z_loss.item() == router_z_loss(fp32_logits).item()
    assert layer.z_loss.item() != router_z_loss(bf16_logits).item()


def test_dtype_auto_is_bf16_on_cuda_and_fp32_on_the_cpu():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("fp32", torch.device("cuda", 0)) == torch.float32


def test_an_unknown_dtype_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"^dtype: must be auto, fp32 or bf16"):
        TrainConfig(dtype="fp16")
