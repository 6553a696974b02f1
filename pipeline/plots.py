"""Headless matplotlib figures, saved atomically as PNG (a crash never leaves half a file),
and a run's curve as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nanomoe.atomic import atomic_write_bytes


def new_figure(w: float = 6.5, h: float = 4.2):
    """``fig, ax`` on the Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curve(history: list[dict], title: str, path: Path) -> None:
    """One training run: train and val loss at each eval."""
    steps = [r["step"] for r in history]
    fig, ax = new_figure(6, 4)
    ax.plot(steps, [r["train_loss"] for r in history], label="train")
    ax.plot(steps, [r["val_loss"] for r in history], label="val")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def curve_csv(history: list[dict]) -> str:
    """curve.csv: step, train_loss, val_loss (nats/token), val_bpb and lr at each eval."""
    buf = io.StringIO()
    names = ["step", "train_loss", "val_loss", "val_bpb", "lr"]
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: row[k] for k in w.fieldnames})
    return buf.getvalue()


def _mean_curve(curves: list) -> tuple[list, list]:
    """Mean val bits per byte by step over a variant's seeds (frames with step, val_bpb)."""
    import pandas as pd

    mean = pd.concat(curves).groupby("step", as_index=False).val_bpb.mean()
    return mean.step.to_list(), mean.val_bpb.to_list()


def _style(i: int) -> str:
    """The line style of the i-th variant: a new one each time matplotlib's 10 colours wrap,
    so the 16 variants of a 2^4 grid stay distinct."""
    return ("-", "--", ":", "-.")[(i // 10) % 4]


def plot_ablation(curves: dict, order: list[str], lowest: float, path: Path) -> None:
    """Every variant's mean val-bpb curve against the step, legend in rank order."""
    fig, ax = new_figure(8, 5)
    for i, variant in enumerate(order):
        steps, loss = _mean_curve(curves[variant])
        ax.plot(steps, loss, label=variant, linestyle=_style(i))
    title = "NanoMoE ablation: validation bits per byte"
    ax.set(xlabel="step", ylabel="val bits per UTF-8 byte", title=title)
    ax.set_ylim(lowest - 0.15, lowest + 1.7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def plot_compute(curves: dict, flops_per_step: dict, order: list[str], lowest: float, path: Path):
    """Mean val bits per byte against training compute (FLOPs = step x tokens/step x FLOPs/token),
    not wall clock: cells run at different times on a machine whose speed drifts."""
    fig, ax = new_figure(8, 5)
    for i, variant in enumerate(order):
        steps, loss = _mean_curve(curves[variant])
        flops = [s * flops_per_step[variant] / 1e12 for s in steps]
        ax.plot(flops, loss, label=variant, linestyle=_style(i))
    ax.set(
        xlabel="training compute (TFLOP: 6 x active params + attention, per token)",
        ylabel="val bits per UTF-8 byte",
        title="NanoMoE ablation: validation bits per byte against compute",
    )
    ax.set_ylim(lowest - 0.15, lowest + 1.7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)
