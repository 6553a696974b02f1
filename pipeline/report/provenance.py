"""Where the ablation's cells came from: what they trained under, and which MLflow runs
trained them.

DVC's run cache restores a cell whose command, deps and params match an earlier run, on this
machine or another (``dvc push/pull --run-cache``), without running it: the cell's files,
run.json included, are those of the run that trained it. Two things follow.

- **Runtime.** The run-cache key does not hold the device, the autocast dtype, torch's
  version, the number of DDP processes or the threads, and each can move the losses (one
  thread against two moved the MoE cells' final loss by up to 0.005 here: README). Each
  cell's metrics.json records them (``nanomoe.device.runtime``) and the report flags an
  ablation whose cells differ in any.
- **Runs.** A restored cell opens no MLflow run; its run.json names the run that trained it,
  possibly in another store (a worker's). Every run id is looked up in the report's store,
  and one it lacks is listed as unresolved, never dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from pipeline.tracking import Client, Run

RUNTIME = ("device", "dtype", "torch_version", "nproc", "threads")  # in every metrics.json
UNRECORDED = "unrecorded"  # a metrics.json from before the runtime was recorded


def runtime_values(df: pd.DataFrame) -> dict[str, list]:
    """Every runtime key -> the distinct values the cells hold, in first-seen order."""
    return {k: list(dict.fromkeys(df[k].tolist())) for k in RUNTIME}


def mixed(df: pd.DataFrame) -> list[str]:
    """One line per flagged key whose cells differ, e.g. ``device: cpu (6), NVIDIA H200 (2)``."""
    lines = []
    for key in RUNTIME:
        counts = df[key].value_counts(sort=False)
        if len(counts) > 1:
            lines.append(f"{key}: " + ", ".join(f"{v} ({n})" for v, n in counts.items()))
    return lines


def unresolved(run_ids: list[str]) -> list[str]:
    """The run ids the tracking store does not hold (or holds deleted)."""
    client = Client()
    return [run_id for run_id in run_ids if not Run(client, run_id).is_active()]


def portable(uri: str, root: Path) -> str:
    """The tracking URI as report.md (a committed file) names it: a local store's path
    relative to the project (``sqlite:///mlflow.db``, what a bare ``mlflow ui`` opens), or
    only its file name when it lies outside; a password left out."""
    scheme, sep, rest = uri.partition(":///")
    if sep and (rest.startswith("/") or scheme == "file") or uri.startswith("/"):
        path = Path("/" + rest.lstrip("/") if sep else uri)
        shown = path.relative_to(root) if path.is_relative_to(root) else f".../{path.name}"
        return f"{scheme}:///{shown}" if sep and scheme != "file" else str(shown)
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", uri)


def provenance_lines(df: pd.DataFrame, missing: list[str], store: str) -> list[str]:
    """The Provenance section of report.md."""
    values = runtime_values(df)
    shown = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in values.items())
    lines = ["## Provenance", "", f"Trained under: {shown}."]
    flagged = mixed(df)
    if flagged:
        lines += [
            "",
            "**Warning: the cells were trained under different runtimes**, which DVC's run "
            "cache does not tell apart; their losses may differ for that reason alone: "
            + "; ".join(flagged)
            + ". Retrain the odd ones out (`dvc repro --force <stage>`) to compare like "
            "with like.",
        ]
    found = len(df) - len(missing)
    lines += ["", f"MLflow: {found} of {len(df)} cells' runs found in `{store}`."]
    if missing:
        cells = df[df.run_id.isin(missing)]
        lines += [
            "Unresolved (run.json names a run this store does not hold: trained in another "
            "store, or deleted): "
            + ", ".join(f"{r.variant} seed {r.seed} (`{r.run_id}`)" for r in cells.itertuples())
            + ". Point MLFLOW_TRACKING_URI at the store the workers used (Team setup).",
        ]
    return lines
