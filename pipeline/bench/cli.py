"""``python -m pipeline.bench``: the data, the F-grams and the machine, then one benchmark.

Every benchmark trains on the prepared splits when there (``--full`` requires them), else on
synthetic tokens, with F-grams mined from them as the pipeline mines them; the machine line
comes first, so that every figure printed after it carries the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import torch

import pipeline.bench
from nanomoe.config import MiningConfig
from nanomoe.fgram import mine_fgrams
from pipeline.bench import dispatch, system_metrics, variants
from pipeline.bench.measure import load_tokens, matmul_peak_gflops
from pipeline.layout import Layout


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.bench", description=pipeline.bench.__doc__.split("\n")[0]
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
    return a


def load_data(full: bool) -> tuple[np.ndarray, np.ndarray, int, str]:
    layout = Layout.load()
    d = layout.prepared("char")  # the benchmarks compare models on one token stream
    if full:
        layout.require(d / "meta.json")
    return load_tokens(d, str(layout.relative(d)))


def describe_machine(peak: float, source: str) -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fp32_matmul_peak_gflops": round(peak, 1),
        "data": source,
    }


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    train, val, vocab, source = load_data(a.full)
    mining = MiningConfig()
    fgrams = mine_fgrams(train, vocab, mining.max_n, mining.min_count, mining.max_fgrams)
    peak = matmul_peak_gflops()
    machine = describe_machine(peak, source)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    if a.ab:
        dispatch.run(train, val, vocab, fgrams, a.steps, machine, a.json)
    elif a.system_metrics:
        system_metrics.run(train, val, vocab, a.steps, machine, a.json)
    else:
        variants.run(train, val, vocab, fgrams, a.steps, a.full, peak, machine, a.json)
    return 0
