"""``--ab``: the MoE's two dispatch paths (``nanomoe/grouped.py``), timed on the same model.

The eager training step of every MoE variant with the grouped matmul, and with the loop over
experts that the MoE used before it (one GEMM per expert over slices read back to the host).
The two alternate in rounds of a few steps on the same model, so drift on a shared machine
hits both alike.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nanomoe.atomic import atomic_write_text
from nanomoe.config import GPTConfig, TrainConfig
from nanomoe.grouped import expert_loop
from nanomoe.model import GPT
from nanomoe.schedule import lr_at
from nanomoe.switches import BY_NAME, Levels, cells, config_fields, model_grid
from nanomoe.trainer import Trainer, set_seed

MOE = BY_NAME["moe"]
MOE_VARIANTS = {**model_grid(), MOE.name: [MOE.high]}  # every variant with MoE on


def ab_dispatch(
    levels: Levels,
    train: np.ndarray,
    val: np.ndarray,
    vocab: int,
    fgrams: Sequence,
    steps: int,
) -> dict:
    """Median ms per training step of the variant ``levels`` with MoE on, whatever they say:
    grouped kernel vs expert loop, interleaved in rounds of 5 steps (the order flips each
    round)."""
    tcfg = TrainConfig(progress=False)
    set_seed(tcfg.seed)
    cfg = GPTConfig(vocab_size=vocab, **config_fields({**levels, MOE.name: MOE.high}))
    trainer = Trainer(GPT(cfg, fgrams=fgrams if cfg.fgram else None), train, val, tcfg)
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
    return {
        "variant": cfg.variant,
        **{f"{k}_ms": v for k, v in ms.items()},
        "grouped_over_loop": ms["grouped"] / ms["loop"],
    }


def run(
    train: np.ndarray,
    val: np.ndarray,
    vocab: int,
    fgrams: Sequence,
    steps: int,
    machine: dict,
    out: Path | None,
) -> None:
    """Time every MoE variant, printing each row as it is measured."""
    print(f"{'variant':<18} {'grouped ms':>10} {'loop ms':>8} {'grouped/loop':>12}")
    rows = []
    for levels in cells(MOE_VARIANTS):
        r = ab_dispatch(levels, train, val, vocab, fgrams, steps)
        rows.append(r)
        print(
            f"{r['variant']:<18} {r['grouped_ms']:>10.1f} {r['loop_ms']:>8.1f} "
            f"{r['grouped_over_loop']:>12.3f}"
        )
    if out:
        atomic_write_text(out, json.dumps({"machine": machine, "ab": rows}, indent=2))
