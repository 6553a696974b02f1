"""Benchmark the 8 variants at nanoGPT's CPU reference config; print a table and the machine.

    python -m pipeline.bench [--steps 40] [--full] [--json PATH]
    python -m pipeline.bench --ab [--steps 40]   # MoE dispatch: grouped kernel vs expert loop
    python -m pipeline.bench --system-metrics    # MLflow's system-metrics monitor: its cost

Config: the defaults of ``GPTConfig``, ``TrainConfig`` and ``MiningConfig`` (nanoGPT's CPU
reference: 4 layers, 4 heads, 128 dims, block 64, batch 12, lr 1e-3, 100 warmup steps, cosine
to 1e-4 over 2000 iterations, dropout 0; MoE 4 experts top-1; F-gram max n 3, mined as the
pipeline mines them), never params.yaml, so the figures do not follow its edits. Per variant:
ms per training step (median over timed steps, after warm-up), tokens/s, model FLOPs/s as a
fraction of this machine's fp32 matmul peak measured in the same run, total and active
parameters, the time to save one checkpoint (a train cell saves one at every eval, so that it
can resume) and, with ``--full``, the final full-split val loss after 2000 iterations.

Model FLOPs per token follow nanoGPT/PaLM: ``6 * N_active + 12 * n_layer * n_embd * block``,
with N_active the parameters a token uses (top_k of the experts; no position table).
The 2-core machine is shared and noisy: read the ratios to dense, measured in one run.

``--ab`` times the eager training step of the four MoE variants with the MoE's two dispatch
paths (``nanomoe/grouped.py``): the grouped matmul, and the loop over experts that the MoE
used before it (one GEMM per expert over slices read back to the host). The two alternate in
rounds of a few steps on the same model, so drift on a shared machine hits both alike.

``--system-metrics`` times the dense training step with and without MLflow's system-metrics
monitor (sampling every second, 10x its default rate, into a throwaway store), alternating.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nanomoe.atomic import atomic_write_text
from nanomoe.config import GPTConfig, MiningConfig, TrainConfig
from nanomoe.data import load_meta, load_split
from nanomoe.fgram import mine_fgrams
from nanomoe.grouped import expert_loop
from nanomoe.model import GPT
from nanomoe.schedule import lr_at
from nanomoe.trainer import Trainer, set_seed
from pipeline.layout import Layout
from pipeline.stage import run_stage

CPU = torch.device("cpu")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(
    n: int = 1024,
    repeats: int = 5,
    device: torch.device = CPU,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Best-of GEMM throughput at the threads torch uses: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 5)
    return 2 * n**3 / best / 1e9


def load_tokens(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(train, val, vocab size, source): the prepared splits in ``folder`` (shown as
    ``name``), else synthetic random tokens."""
    if (folder / "meta.json").exists():
        meta = load_meta(folder)
        train, val = (np.asarray(load_split(folder, s)) for s in ("train", "val"))
        return train, val, meta["vocab_size"], name
    ids = np.random.default_rng(0).integers(0, 65, 200_000).astype(np.uint16)
    return ids[:180_000], ids[180_000:], 65, f"synthetic random tokens (no {name})"


def load_data(full: bool) -> tuple[np.ndarray, np.ndarray, int, str]:
    layout = Layout.load()
    d = layout.prepared
    if full:
        layout.require(d / "meta.json")
    return load_tokens(d, str(layout.relative(d)))


def bench_variant(rope, moe, fgram, train, val, vocab, fgrams, steps, full) -> dict:
    tcfg = TrainConfig(progress=full)
    set_seed(tcfg.seed)
    cfg = GPTConfig(vocab_size=vocab, rope=rope, moe=moe, fgram=fgram)
    model = GPT(cfg, fgrams=fgrams if fgram else None)
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


def ab_dispatch(rope, fgram, train, val, vocab, fgrams, steps: int) -> dict:
    """Median ms per training step of one MoE variant: grouped kernel vs expert loop,
    interleaved in rounds of 5 steps (the order flips each round)."""
    tcfg = TrainConfig(progress=False)
    set_seed(tcfg.seed)
    cfg = GPTConfig(vocab_size=vocab, rope=rope, moe=True, fgram=fgram)
    trainer = Trainer(GPT(cfg, fgrams=fgrams if fgram else None), train, val, tcfg)
    for i in range(5):
        trainer.train_step(lr_at(i, tcfg))
    times: dict[str, list[float]] = {"grouped": [], "loop": []}
    sides = {"grouped": contextlib.nullcontext, "loop": expert_loop}
    for r in range(max(1, steps // 5)):
        for name in ("grouped", "loop") if r % 2 == 0 else ("loop", "grouped"):
            with sides[name]():
                for _ in range(5):
                    t0 = time.perf_counter()
                    trainer.train_step(tcfg.learning_rate)
                    times[name].append(time.perf_counter() - t0)
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {"variant": cfg.variant, **{f"{k}_ms": v for k, v in ms.items()},
            "grouped_over_loop": ms["grouped"] / ms["loop"]}  # fmt: skip


def ab_system_metrics(train, val, vocab, steps: int, interval: float = 1.0) -> dict:
    """Median ms per training step of the dense model with the system-metrics monitor on
    and off, in alternating blocks of 100 steps; a block with the monitor starts timing once
    the monitor has taken its first sample (a run starts it once, not every 100 steps)."""
    from pipeline.tracking import Run, system_metrics  # MLflow: not for gpu_check's imports

    tcfg = TrainConfig(progress=False)
    set_seed(tcfg.seed)
    trainer = Trainer(GPT(GPTConfig(vocab_size=vocab)), train, val, tcfg)
    for i in range(5):
        trainer.train_step(lr_at(i, tcfg))
    times: dict[str, list[float]] = {"on": [], "off": []}
    env = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": str(interval)}
    with tempfile.TemporaryDirectory() as tmp:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            run = Run.start("bench", "system-metrics", {})
            sides = {"on": lambda: system_metrics(run), "off": contextlib.nullcontext}
            for r in range(max(1, steps // 100)):
                for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
                    with sides[name]():
                        time.sleep(1.5 * interval)
                        for _ in range(100):
                            t0 = time.perf_counter()
                            trainer.train_step(tcfg.learning_rate)
                            times[name].append(time.perf_counter() - t0)
            history = run.client.get_metric_history(run.id, "system/cpu_utilization_percentage")
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.update({k: v})
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {
        **{f"{k}_ms": v for k, v in ms.items()},
        "on_over_off": ms["on"] / ms["off"],
        "steps_each": len(times["on"]),
        "samples_logged": len(history),
        "interval_s": interval,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--steps", type=int, default=40, help="timed steps per variant (default 40)")
    ap.add_argument("--full", action="store_true", help="train 2000 iterations; report val loss")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--ab", action="store_true", help="MoE dispatch: grouped kernel vs loop")
    ap.add_argument(
        "--system-metrics", action="store_true", help="MLflow's system-metrics monitor: on vs off"
    )
    a = ap.parse_args(argv)
    if a.steps < 1:
        ap.error("--steps must be >= 1")

    train, val, vocab, source = load_data(a.full)
    mining = MiningConfig()
    fgrams = mine_fgrams(train, vocab, mining.max_n, mining.min_count, mining.max_fgrams)
    peak = matmul_peak_gflops()
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fp32_matmul_peak_gflops": round(peak, 1),
        "data": source,
    }
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    if a.ab:
        return print_ab(train, val, vocab, fgrams, a.steps, machine, a.json)
    if a.system_metrics:
        r = ab_system_metrics(train, val, vocab, a.steps)
        print(
            f"dense step: {r['on_ms']:.1f} ms with the system-metrics monitor sampling every "
            f"{r['interval_s']:.0f} s ({r['samples_logged']} samples logged), {r['off_ms']:.1f} "
            f"ms without; on/off {r['on_over_off']:.3f} over {r['steps_each']} steps each"
        )
        if a.json:
            atomic_write_text(a.json, json.dumps({"machine": machine, "system_metrics": r}))
        return 0
    rows = []
    for rope, moe, fgram in itertools.product((False, True), repeat=3):
        rows.append(bench_variant(rope, moe, fgram, train, val, vocab, fgrams, a.steps, a.full))
    peak_end = matmul_peak_gflops()
    machine["fp32_matmul_peak_gflops_end"] = round(peak_end, 1)
    dense_ms = rows[0]["ms_per_step"]
    peak_mean = (peak + peak_end) / 2
    for r in rows:
        r["x_dense"] = r["ms_per_step"] / dense_ms
        r["mfu"] = r["flops_per_token"] * r["tokens_per_sec"] / (peak_mean * 1e9)

    cols = ("ms/step", "x dense", "tokens/s", "MFU", "params", "active")
    head = f"{'variant':<18} " + " ".join(
        f"{c:>{w}}" for c, w in zip(cols, (8, 8, 9, 6, 9, 9), strict=True)
    )
    head += f" {'val loss':>9}" if a.full else ""
    print(head)
    for r in rows:
        line = (
            f"{r['variant']:<18} {r['ms_per_step']:>8.1f} {r['x_dense']:>8.2f} "
            f"{r['tokens_per_sec']:>9,.0f} {r['mfu']:>6.1%} "
            f"{r['params_total']:>9,} {r['params_active']:>9,}"
        )
        print(line + (f" {r['val_loss']:>9.4f}" if a.full else ""))
    if not a.full:
        print(
            "checkpoint at every eval (resume): "
            + ", ".join(f"{r['variant']} {r['ckpt_ms']:.0f} ms" for r in rows)
            + f"; that is {min(r['ckpt_ms_per_step'] for r in rows):.2f}-"
            f"{max(r['ckpt_ms_per_step'] for r in rows):.2f} ms per step at eval_interval "
            f"{TrainConfig().eval_interval}"
        )
    print(
        f"fp32 matmul peak: {peak:.0f} GFLOP/s at start, {peak_end:.0f} at end (MFU uses the mean)"
    )
    if a.json:
        atomic_write_text(a.json, json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


def print_ab(train, val, vocab, fgrams, steps: int, machine: dict, out: Path | None) -> int:
    print(f"{'variant':<18} {'grouped ms':>10} {'loop ms':>8} {'grouped/loop':>12}")
    rows = []
    for rope, fgram in itertools.product((False, True), repeat=2):
        r = ab_dispatch(rope, fgram, train, val, vocab, fgrams, steps)
        rows.append(r)
        print(f"{r['variant']:<18} {r['grouped_ms']:>10.1f} {r['loop_ms']:>8.1f} "
              f"{r['grouped_over_loop']:>12.3f}")  # fmt: skip
    if out:
        atomic_write_text(out, json.dumps({"machine": machine, "ab": rows}, indent=2))
    return 0


if __name__ == "__main__":
    run_stage(main)
