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
from pipeline.tune.settings import TuneSettings, tuned_levels
from pipeline.tune.storage import local_lock

# Train settings that change speed or logging, not the loss.
NOT_COMPARED = {"device", "compile", "progress", "checkpoint_interval", "seed"}


def _upstream_missing(layout: Layout, settings: TuneSettings, kind: str) -> str | None:
    prepared, fgrams = layout.prepared(kind), layout.fgrams(kind)
    for path in (layout.tokenizer(kind), *(prepared / n for n in ("meta.json", "train.bin"))):
        if not path.exists():
            return str(layout.relative(path))
    if not (prepared / "val.bin").exists():
        return str(layout.relative(prepared / "val.bin"))
    if not fgrams.exists():
        return str(layout.relative(fgrams))
    mined = json.loads(fgrams.read_text(encoding="utf-8")).get("mine_max_n")
    if mined is not None and mined < settings.space["fgram_max_n"][1]:
        return f"{layout.relative(fgrams)} mined up to n={mined} only"
    return None


def ensure_upstream(layout: Layout, settings: TuneSettings, kind: str) -> None:
    """Run ``dvc repro mine_fgrams@<kind>`` when the tokenizer's prepared data or mined
    F-grams are missing or too short; one worker of this machine runs it, the others wait."""
    if _upstream_missing(layout, settings, kind) is None:
        return
    stage = f"mine_fgrams@{kind}"
    with local_lock(layout.tune_dir / "upstream.lock"):
        missing = _upstream_missing(layout, settings, kind)
        if missing is None:
            return
        print(f"{missing} is missing: running dvc repro {stage}", flush=True)
        cmd = [sys.executable, "-m", "dvc", "repro", stage]
        # The stages run `python -m ...`: make that this interpreter, as for this command.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "PATH": path}
        if subprocess.run(cmd, cwd=layout.root, env=env).returncode != 0:
            raise StageError(f"dvc repro {stage} failed (see above); fix it and rerun")
    missing = _upstream_missing(layout, settings, kind)
    if missing is not None:
        raise StageError(f"{missing} is still missing after dvc repro {stage}")


def _tokenizer_settings(params: Params) -> dict:
    kind = tuned_levels(params)["tokenizer"]
    bpe = {"vocab_size": params.tokenizer.vocab_size, "max": params.tokenizer.train_max_chars}
    return {"kind": kind, **(bpe if kind == "bpe" else {})}


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
        "tokenizer": _tokenizer_settings(params),
        "mining": params.mining.to_dict(),
        "model": {k: v for k, v in params.model.to_dict().items() if k not in tuned | cell},
        "train": {k: v for k, v in params.train.to_dict().items() if k not in tuned | NOT_COMPARED},
    }
    return json.loads(json.dumps(fp))
