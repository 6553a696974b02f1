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
