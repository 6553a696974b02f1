"""``--system-metrics``: what MLflow's system-metrics monitor costs the training step.

The dense training step with and without the monitor (sampling every second, 10x its default
rate, into a throwaway store), alternating. The only benchmark that imports MLflow (through
``pipeline.tracking``).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from nanomoe.atomic import atomic_write_text
from nanomoe.config import GPTConfig, TrainConfig
from nanomoe.model import GPT
from nanomoe.schedule import lr_at
from nanomoe.trainer import Trainer, set_seed
from pipeline.tracking import Run, system_metrics


def ab_system_metrics(
    train: np.ndarray, val: np.ndarray, vocab: int, steps: int, interval: float = 1.0
) -> dict:
    """Median ms per training step of the dense model with the system-metrics monitor on
    and off, in alternating blocks of 100 steps; a block with the monitor starts timing once
    the monitor has taken its first sample (a run starts it once, not every 100 steps)."""
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


def run(
    train: np.ndarray, val: np.ndarray, vocab: int, steps: int, machine: dict, out: Path | None
) -> None:
    r = ab_system_metrics(train, val, vocab, steps)
    print(
        f"dense step: {r['on_ms']:.1f} ms with the system-metrics monitor sampling every "
        f"{r['interval_s']:.0f} s ({r['samples_logged']} samples logged), {r['off_ms']:.1f} "
        f"ms without; on/off {r['on_over_off']:.3f} over {r['steps_each']} steps each"
    )
    if out:
        atomic_write_text(out, json.dumps({"machine": machine, "system_metrics": r}))
