"""Where each stage's files live, relative to the repo root: the stage boundaries of dvc.yaml.

One place, so a stage's writer and its readers cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import StageError

RAW = Path("data/raw/input.txt")
PREPARED = Path("data/prepared")
FGRAMS = Path("data/fgrams.json")
FGRAM_METRICS = Path("data/fgram_metrics.json")
ABLATION = Path("experiments/ablation")
TUNE_DIR = Path("experiments/tune")


def require_prepared(root: Path) -> Path:
    """The prepared-data folder, or a one-line error that says which stage to run."""
    if not (root / PREPARED / "meta.json").exists():
        raise StageError(f"{PREPARED}/ not found; run the prepare stage first (dvc repro prepare)")
    return root / PREPARED
