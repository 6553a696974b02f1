"""The default benchmark: every cell of the ablation trained at the CPU reference config.

Per variant: ms per training step (median over timed steps, after warm-up), tokens/s, model
FLOPs/s as a fraction of this machine's fp32 matmul peak measured in the same run, total and
active parameters, the time to save one checkpoint (a train cell saves one at every eval, so
that it can resume) and, with ``--full``, the final full-split val loss after 2000 iterations.

Model FLOPs per token follow nanoGPT/PaLM: ``6 * N_active + 12 * n_layer * n_embd * block``,
with N_active the parameters a token uses (top_k of the experts; no position table).
The 2-core machine is shared and noisy: read the ratios to dense, measured in one run.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nanomoe.atomic import atomic_write_text
from nanomoe.config import GPTConfig, TrainConfig
from nanomoe.model import GPT
from nanomoe.schedule import lr_at
from nanomoe.switches import Levels, cells, config_fields, model_grid
from nanomoe.trainer import Trainer, set_seed
from pipeline.bench.measure import matmul_peak_gflops


def bench_variant(
    levels: Levels,
    train: np.ndarray,
    val: np.ndarray,
    vocab: int,
    fgrams: Sequence,
    steps: int,
    full: bool,
) -> dict:
    """One variant's row: its timing, size and checkpoint cost (``full``: its val loss)."""
    tcfg = TrainConfig(progress=full)
    set_seed(tcfg.seed)
    cfg = GPTConfig(vocab_size=vocab, **config_fields(levels))
    model = GPT(cfg, fgrams=fgrams if cfg.fgram else None)
    trainer = Trainer(model, train, val, tcfg)
    total, active = model.num_params()
    row = {"variant": cfg.variant, "params_total": total, "params_active": active}
    if full:  # the whole 2000-iteration run; its step times are the timing sample
        res = trainer.fit()
        row["ms_per_step"] = 1000 * tcfg.batch_size * cfg.block_size / res.tokens_per_sec
        row["val_loss"] = res.val_loss
    else:
        for i in range(5):  # warm-up: allocator, thread pool, first-call dispatch
            trainer.train_step(lr_at(i, tcfg))
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            trainer.train_step(lr_at(5 + i, tcfg))
            times.append(time.perf_counter() - t0)
        row["ms_per_step"] = 1000 * statistics.median(times)
        with tempfile.TemporaryDirectory() as tmp:  # what resume costs: one eval's checkpoint
            saves = []
            for _ in range(3):
                t0 = time.perf_counter()
                trainer.save_checkpoint(Path(tmp) / "ckpt.pt")
                saves.append(time.perf_counter() - t0)
        row["ckpt_ms"] = 1000 * statistics.median(saves)
        row["ckpt_ms_per_step"] = row["ckpt_ms"] / tcfg.eval_interval
    row["tokens_per_sec"] = tcfg.batch_size * cfg.block_size / (row["ms_per_step"] / 1000)
    row["flops_per_token"] = model.flops_per_token()
    return row


def run(
    train: np.ndarray,
    val: np.ndarray,
    vocab: int,
    fgrams: Sequence,
    steps: int,
    full: bool,
    peak: float,
    machine: dict,
    out: Path | None,
) -> None:
    """Bench every cell, then print the table: MFU against the mean of ``peak`` (measured
    before) and the peak measured again after, since the machine drifts."""
    rows = [
        bench_variant(levels, train, val, vocab, fgrams, steps, full)
        for levels in cells(model_grid())
    ]
    peak_end = matmul_peak_gflops()
    machine["fp32_matmul_peak_gflops_end"] = round(peak_end, 1)
    dense_ms = rows[0]["ms_per_step"]
    peak_mean = (peak + peak_end) / 2
    for r in rows:
        r["x_dense"] = r["ms_per_step"] / dense_ms
        r["mfu"] = r["flops_per_token"] * r["tokens_per_sec"] / (peak_mean * 1e9)

    print_table(rows, full)
    print(
        f"fp32 matmul peak: {peak:.0f} GFLOP/s at start, {peak_end:.0f} at end (MFU uses the mean)"
    )
    if out:
        atomic_write_text(out, json.dumps({"machine": machine, "rows": rows}, indent=2))


def print_table(rows: list[dict], full: bool) -> None:
    cols = ("ms/step", "x dense", "tokens/s", "MFU", "params", "active")
    head = f"{'variant':<18} " + " ".join(
        f"{c:>{w}}" for c, w in zip(cols, (8, 8, 9, 6, 9, 9), strict=True)
    )
    head += f" {'val loss':>9}" if full else ""
    print(head)
    for r in rows:
        line = (
            f"{r['variant']:<18} {r['ms_per_step']:>8.1f} {r['x_dense']:>8.2f} "
            f"{r['tokens_per_sec']:>9,.0f} {r['mfu']:>6.1%} "
            f"{r['params_total']:>9,} {r['params_active']:>9,}"
        )
        print(line + (f" {r['val_loss']:>9.4f}" if full else ""))
    if not full:
        print(
            "checkpoint at every eval (resume): "
            + ", ".join(f"{r['variant']} {r['ckpt_ms']:.0f} ms" for r in rows)
            + f"; that is {min(r['ckpt_ms_per_step'] for r in rows):.2f}-"
            f"{max(r['ckpt_ms_per_step'] for r in rows):.2f} ms per step at eval_interval "
            f"{TrainConfig().eval_interval}"
        )
