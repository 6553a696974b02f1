"""One-command GPU check: the device, the training step eager and compiled in bf16, and the
8 variants trained briefly at nanoGPT's GPU config; one JSON of figures.

    make gpu-check            # = python3 -m pipeline.bench.gpu_check
    python -m pipeline.bench.gpu_check [--train-steps 300] [--bench-steps 30] [--out PATH]

Runs as it stands on a bare CUDA machine: it imports torch, numpy and tqdm only (no PyYAML,
MLflow, DVC or Optuna; no ``make install``), and reads ``data/char/prepared`` when it is there
(else synthetic tokens). nanoGPT's shakespeare_char GPU config: 6 layers, 6 heads, 384
dims, block 256, batch 64, lr 1e-3, warmup 100, cosine to 1e-4, beta2 0.99 (dropout 0 here,
as in the ablation). The bench times the dense and the full (rope+moe+fgram) model, eager
and ``torch.compile``d, under bf16 autocast; MFU is against a bf16 matmul peak measured in
the same run. Every variant then trains ``--train-steps`` steps eager in bf16 and reports
its final full-split val loss, tokens/s, and how much its loss moved from step 0. Sized to
finish within about 7 minutes on one H100/H200-class GPU. Without CUDA it fails in one line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from nanomoe.atomic import atomic_write_text
from nanomoe.config import GPTConfig, MiningConfig, TrainConfig
from nanomoe.fgram import mine_fgrams
from nanomoe.model import GPT
from nanomoe.switches import Levels, baseline, cells, config_fields, full, model_grid
from nanomoe.trainer import Trainer, set_seed
from pipeline.bench.measure import load_tokens, matmul_peak_gflops, sync
from pipeline.stage import StageError, run_stage

GPU_MODEL = dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0)
TINY_MODEL = dict(block_size=16, n_layer=1, n_head=2, n_embd=32, dropout=0.0)  # CPU tests
BENCHED = (baseline(), full())  # the dense model and the full one


def make_trainer(levels: Levels, data, fgrams, model_kw, tcfg) -> Trainer:
    train, val, vocab = data
    set_seed(tcfg.seed)
    cfg = GPTConfig(vocab_size=vocab, **config_fields(levels), **model_kw)
    return Trainer(GPT(cfg, fgrams=fgrams if cfg.fgram else None), train, val, tcfg)


def bench(levels: Levels, data, fgrams, model_kw, tcfg, steps: int, device) -> dict:
    """ms per training step after warm-up (the first steps include compiling)."""
    t0 = time.perf_counter()
    trainer = make_trainer(levels, data, fgrams, model_kw, tcfg)
    for _ in range(3):
        trainer.train_step(tcfg.learning_rate)
    sync(device)
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        trainer.train_step(tcfg.learning_rate)
        sync(device)
        times.append(time.perf_counter() - t)
    ms = 1000 * statistics.median(times)
    tokens_per_s = tcfg.batch_size * model_kw["block_size"] / (ms / 1000)
    return {
        "variant": trainer.model.config.variant,
        "compile": tcfg.compile,
        "ms_per_step": ms,
        "tokens_per_sec": tokens_per_s,
        "flops_per_token": trainer.model.flops_per_token(),
        "warmup_s": warm_s,
    }


def train_briefly(levels: Levels, data, fgrams, model_kw, tcfg) -> dict:
    trainer = make_trainer(levels, data, fgrams, model_kw, tcfg)
    res = trainer.fit()
    return {
        "variant": trainer.model.config.variant,
        "steps": res.steps,
        "first_val_loss": res.history[0]["val_loss"],
        "final_val_loss": res.val_loss,
        "tokens_per_sec": res.tokens_per_sec,
        "wall_s": res.wall_s,
        "params_total": res.params_total,
        "params_active": res.params_active,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.bench.gpu_check", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--train-steps", type=int, default=300, help="steps per variant (300)")
    ap.add_argument("--bench-steps", type=int, default=30, help="timed steps per bench row (30)")
    ap.add_argument("--out", type=Path, default=Path("experiments/gpu/gpu_check.json"))
    ap.add_argument("--data", type=Path, default=Path("data/char/prepared"), help="prepared splits")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # tests: cpu
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: tiny model
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise StageError(
            "CUDA: no GPU visible to torch (torch.cuda.is_available() is False); run "
            "make gpu-check on a machine with an NVIDIA GPU and a CUDA build of torch"
        )
    device = torch.device(a.device)
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    n = 256 if a.tiny else 8192
    peak = matmul_peak_gflops(n, device=device, dtype=torch.bfloat16) / 1000  # TFLOP/s
    machine = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "bf16_matmul_peak_tflops": round(peak, 3),
    }
    print("device: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)

    train, val, vocab, source = load_tokens(a.data, str(a.data))
    machine["data"] = source
    mining = MiningConfig()
    fgrams = mine_fgrams(train, vocab, mining.max_n, mining.min_count, mining.max_fgrams)
    data = (train, val, vocab)
    model_kw = TINY_MODEL if a.tiny else GPU_MODEL
    base = TrainConfig(
        batch_size=4 if a.tiny else 64,
        beta2=0.99,
        device=a.device,
        dtype="bf16",
        eval_interval=max(1, a.train_steps),
        eval_iters=2 if a.tiny else 20,
        max_iters=a.train_steps,
        progress=not a.tiny,
    )

    rows = []
    for levels in BENCHED:
        for compiled in (False, True):
            tcfg = base.replace(compile=compiled)
            row = bench(levels, data, fgrams, model_kw, tcfg, a.bench_steps, device)
            row["mfu"] = row["flops_per_token"] * row["tokens_per_sec"] / (peak * 1e12)
            rows.append(row)
            mode = "compiled" if compiled else "eager"
            print(
                f"bench {row['variant']:<16} {mode:<8} {row['ms_per_step']:7.2f} ms/step "
                f"{row['tokens_per_sec']:>11,.0f} tok/s MFU {row['mfu']:.1%} "
                f"(warm-up {row['warmup_s']:.0f} s)",
                flush=True,
            )
    trained = []
    for levels in cells(model_grid()):
        cell = train_briefly(levels, data, fgrams, model_kw, base)
        trained.append(cell)
        print(
            f"train {cell['variant']:<16} {cell['steps']} steps: val "
            f"{cell['first_val_loss']:.3f} -> {cell['final_val_loss']:.4f}, "
            f"{cell['tokens_per_sec']:,.0f} tok/s",
            flush=True,
        )
    machine["wall_s"] = round(time.perf_counter() - started, 1)
    figures = {
        "machine": machine,
        "config": {**model_kw, "batch_size": base.batch_size},
        "bench": rows,
        "train": trained,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(figures, indent=2))
    print(f"{a.out}: written ({machine['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    run_stage(main)
