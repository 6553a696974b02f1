"""Headless matplotlib figures, saved atomically as PNG (a crash never leaves half a file)."""

from __future__ import annotations

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
    ax.set(xlabel="step", ylabel="cross-entropy (nats/char)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
