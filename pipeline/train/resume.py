"""Resume a train cell after any interruption: a kill, a crash, a store that went away.

A cell checkpoints at every eval, and on SIGTERM at the step it reached (preempt.py), to
``.checkpoints/<cell>.pt`` ($NANOMOE_CHECKPOINTS moves the folder: layout.py), not to its DVC
outs (which DVC deletes before it re-runs a stage), and ``.checkpoints/<cell>.json`` names its
MLflow run and the step reached. When the stage runs again, the checkpoint is resumed if its
fingerprint matches the cell about to run, and the same MLflow run goes on; otherwise the
checkpoint is discarded, with one line saying why, its run is marked KILLED, and the cell
trains from step 0. A cell that completes deletes both files.

The fingerprint holds what changes the math: the model config, the train config less what only
changes how the cell executes (``EXECUTION``), the seed, and the sha256 of the prepared data
files, of the F-gram table and of the model library's code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import nanomoe
from nanomoe.atomic import atomic_write_text
from nanomoe.checkpoint import load_checkpoint
from nanomoe.config import GPTConfig, TrainConfig

EXECUTION = ("progress", "device", "compile", "checkpoint_interval")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_hash() -> str:
    """The sha256 of the model library's source, file names included."""
    digest = hashlib.sha256()
    root = Path(nanomoe.__file__).parent
    for path in sorted(root.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(config: GPTConfig, train_cfg: TrainConfig, inputs: list[Path]) -> dict:
    """What a checkpoint must share with a cell to be resumed by it."""
    train = {k: v for k, v in train_cfg.to_dict().items() if k not in EXECUTION}
    return {
        "model": config.to_dict(),
        "train": train,
        "inputs": {path.name: sha256_file(path) for path in inputs},
        "code": code_hash(),
    }


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Path  # the cell's in-progress checkpoint
    state: Path  # JSON naming the cell's MLflow run

    def check(self, fp: dict) -> tuple[dict | None, str | None]:
        """(the checkpoint to resume from, or None; why not, when there is one)."""
        if not self.checkpoint.exists():
            return None, None
        try:
            ckpt = load_checkpoint(self.checkpoint)
        except Exception as err:  # a file torch cannot read: not worth a traceback
            return None, f"unreadable ({err.__class__.__name__})"
        saved = ckpt.get("fingerprint")
        if saved != fp:
            differ = sorted(k for k in fp if not saved or saved.get(k) != fp[k])
            return None, f"its {', '.join(differ)} differ from this cell's"
        return ckpt, None

    def run_id(self) -> str | None:
        try:
            return json.loads(self.state.read_text(encoding="utf-8"))["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_run(self, run_id: str) -> None:
        atomic_write_text(self.state, json.dumps({"run_id": run_id}) + "\n")

    def save_step(self, step: int, total: int) -> None:
        """The step the cell has reached (of ``total``) beside its run id: what
        ``python -m pipeline.cluster status`` shows of a running or preempted cell."""
        state = {"run_id": self.run_id(), "step": step, "max_iters": total}
        atomic_write_text(self.state, json.dumps(state) + "\n")

    def progress(self) -> tuple[int, int] | None:
        """(step reached, max_iters) as ``save_step`` left them; None before the first."""
        try:
            state = json.loads(self.state.read_text(encoding="utf-8"))
            return int(state["step"]), int(state["max_iters"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def discard(self) -> None:
        self.checkpoint.unlink(missing_ok=True)

    def clear(self) -> None:
        self.checkpoint.unlink(missing_ok=True)
        self.state.unlink(missing_ok=True)
