"""What a study needs before its first trial, and what makes its trials comparable.

- ``ensure_upstream``: the prepared splits and the mined F-grams, brought up to date with
  ``dvc repro mine_fgrams`` when missing (mined once, up to the longest length the space may
  try; each trial loads only the F-grams it uses).
- ``fingerprint``: every setting that makes two trials' losses comparable. A study stores
  one, and refuses to go on under another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nanomoe.switches import config_fields, full
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.stage import StageError
from pipeline.tune.ladder import Ladder
from pipeline.tune.settings import TuneSettings
from pipeline.tune.storage import local_lock

# Train settings that change speed or logging, not the loss.
NOT_COMPARED = {"device", "compile", "progress", "checkpoint_interval", "seed"}


def _upstream_missing(layout: Layout, settings: TuneSettings) -> str | None:
    for name in ("meta.json", "train.bin", "val.bin"):
        if not (layout.prepared / name).exists():
            return str(layout.relative(layout.prepared / name))
    if not layout.fgrams.exists():
        return str(layout.relative(layout.fgrams))
    mined = json.loads(layout.fgrams.read_text(encoding="utf-8")).get("mine_max_n")
    if mined is not None and mined < settings.space["fgram_max_n"][1]:
        return f"{layout.relative(layout.fgrams)} mined up to n={mined} only"
    return None


def ensure_upstream(layout: Layout, settings: TuneSettings) -> None:
    """Run ``dvc repro mine_fgrams`` when the prepared data or the mined F-grams are missing
    or too short; one worker of this machine runs it, the others wait."""
    if _upstream_missing(layout, settings) is None:
        return
    with local_lock(layout.tune_dir / "upstream.lock"):
        missing = _upstream_missing(layout, settings)
        if missing is None:
            return
        print(f"{missing} is missing: running dvc repro mine_fgrams", flush=True)
        cmd = [sys.executable, "-m", "dvc", "repro", "mine_fgrams"]
        # The stages run `python -m ...`: make that this interpreter, as for this command.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "PATH": path}
        if subprocess.run(cmd, cwd=layout.root, env=env).returncode != 0:
            raise StageError("dvc repro mine_fgrams failed (see above); fix it and rerun")
    missing = _upstream_missing(layout, settings)
    if missing is not None:
        raise StageError(f"{missing} is still missing after dvc repro mine_fgrams")


def fingerprint(params: Params, settings: TuneSettings, ladder: Ladder, seed: int) -> dict:
    """The settings a study's trials share (what the study tunes or overrides left out),
    as the storage gives them back."""
    tuned = {*settings.space, *ladder.budget()}
    cell = {"vocab_size", *config_fields(full())}  # the full model on this corpus
    fp = {
        "space": settings.space,
        "budget": ladder.budget(),
        "ladder": {
            "rungs": list(ladder.rungs),
            "eta": ladder.reduction_factor,
            "finalists": ladder.finalists,
        },
        "seed": seed,
        "data": {"sha256": params.data.sha256, "val_fraction": params.data.val_fraction},
        "mining": params.mining.to_dict(),
        "model": {k: v for k, v in params.model.to_dict().items() if k not in tuned | cell},
        "train": {k: v for k, v in params.train.to_dict().items() if k not in tuned | NOT_COMPARED},
    }
    return json.loads(json.dumps(fp))
