"""Generate text from the model of an MLflow run, on whatever store MLFLOW_TRACKING_URI names.

    python -m pipeline.sample --run-id 3f2a... --prompt "ROMEO:" --tokens 500

Every finished ablation cell logs its model to its run (``runs:/<run id>/model``, which
``mlflow.pyfunc.load_model`` loads too); this command reads that model's file (weights,
config, vocabulary and F-gram table) and samples from it on any device. The run id is on
the run's page in ``mlflow ui`` and in the cell's ``experiments/ablation/<cell>/run.json``.
The options after ``--run-id`` are those of ``python -m nanomoe.sample``, which samples from a
local ``ckpt.pt`` or ``model.pt``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from nanomoe.config import InputError
from nanomoe.sample import sample_command
from pipeline.tracking.model import fetch_model_file

RUN_FIX = "pass the Run ID of a finished ablation cell (mlflow ui, or the cell's run.json)"


def fetch_model(run_id: str, folder: str) -> str:
    """Download the run's model file into ``folder``; its path. Raises ``InputError``."""
    try:
        return fetch_model_file(run_id, folder)
    except LookupError as err:
        raise InputError(f"--run-id {run_id}", str(err), RUN_FIX) from None
    except FileNotFoundError as err:
        fix = "only finished ablation cells have one: run dvc repro, or pick such a run"
        raise InputError(f"--run-id {run_id}", str(err), fix) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-id", required=True, help="the MLflow run of a finished ablation cell")
    with tempfile.TemporaryDirectory() as tmp:
        return sample_command(p, argv, lambda a: fetch_model(a.run_id, tmp))


if __name__ == "__main__":
    sys.exit(main())
