"""Where each stage's files live, read from dvc.yaml: the one place they are declared.

Code asks for a stage's files by what they hold (``layout.fgrams``: the one out of
``mine_fgrams``) or by file name (``layout.outs("report")["report.md"]``), so a path changed
in dvc.yaml changes what the code reads and writes, and the two cannot drift.

Project files resolve from the working directory: under ``dvc exp run --temp/--queue`` that
is the experiment's temporary copy, so an experiment reads its own params.yaml and writes its
own outputs. (Only the MLflow store follows DVC_ROOT to the parent repo: see tracking.py.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from nanomoe.switches import SWITCHES, Levels, variant_name
from pipeline.stage import StageError

CODE_DIRS = ("nanomoe", "pipeline")
TUNE_DIR = Path("experiments/tune")  # the tuner's outputs: not a DVC stage
# In-progress checkpoints of train cells: outside every out (DVC deletes a stage's outs
# before it re-runs it) and outside experiments/ablation (the report's dep); git- and
# DVC-ignored, and deleted when the cell completes. NANOMOE_CHECKPOINTS moves them (an
# environment variable, not a param: where they live changes no number): on a cluster, to
# the shared filesystem, where a requeued task on another node finds them.
RESUME_DIR = Path(".checkpoints")
CHECKPOINTS_ENV = "NANOMOE_CHECKPOINTS"


def project_root() -> Path:
    """The nearest folder upwards from the working directory that holds dvc.yaml."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file():
            return d
    raise StageError(f"dvc.yaml: not found in {here} or above; run from the project root")


def _dvc_value(value: object) -> str:
    """How DVC renders a matrix value in ``${item.<key>}``: booleans in lower case."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _holds(values: list, level: object) -> bool:
    """Whether a matrix's ``values`` hold ``level`` (``True`` is not ``1``)."""
    return any(v == level and type(v) is type(level) for v in values)


def _path(entry: str | dict) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


@dataclass(frozen=True)
class Layout:
    root: Path
    stages: dict[str, dict]

    @classmethod
    def load(cls, root: Path | None = None) -> Layout:
        root = root or project_root()
        try:
            stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
            raise StageError(
                f"dvc.yaml: cannot read its stages ({err.__class__.__name__}); restore it from git"
            ) from None
        return cls(root, stages)

    def outs(self, stage: str, **item: object) -> dict[str, Path]:
        """Every out, metric and plot of ``stage`` by file name, ``${item.<key>}`` filled in
        from ``item`` (the matrix values of one cell)."""
        paths = {}
        for kind in ("outs", "metrics", "plots"):
            for entry in self.stages[stage].get(kind, []):
                path = _path(entry)
                for key, value in item.items():
                    path = path.replace(f"${{item.{key}}}", _dvc_value(value))
                paths[Path(path).name] = self.root / path
        return paths

    def only(self, stage: str, kind: str = "outs", **item: object) -> Path:
        """The one entry of ``kind`` (outs, metrics) that ``stage`` declares, ``${item.<key>}``
        filled in from ``item``."""
        entries = self.stages[stage].get(kind, [])
        if len(entries) != 1:
            raise StageError(f"dvc.yaml: stage {stage} must declare exactly one entry in {kind}")
        path = _path(entries[0])
        for key, value in item.items():
            path = path.replace(f"${{item.{key}}}", _dvc_value(value))
        return self.root / path

    def data_deps(self, stage: str) -> list[Path]:
        """The deps of ``stage`` that are data, not code."""
        deps = [Path(d) for d in self.stages[stage].get("deps", [])]
        return [self.root / d for d in deps if d.parts[0] not in CODE_DIRS]

    def require(self, path: Path) -> Path:
        """``path``, or a one-line error naming the stage that writes it."""
        if not path.exists():
            stage = next((w for s in self.stages if (w := self._writes(s, path))), None)
            fix = f"run the {stage} stage first (dvc repro {stage})" if stage else "dvc repro"
            raise StageError(f"{self.relative(path)}: not found; {fix}")
        return path

    def _writes(self, stage: str, path: Path) -> str | None:
        """Whether ``stage`` writes ``path``; a matrix stage over ``tokenizer``: its instance
        that does (``prepare@bpe``)."""
        for level in self.stages[stage].get("matrix", {}).get("tokenizer", [None]):
            item = {"tokenizer": level} if level else {}
            if path in self.outs(stage, **item).values():
                return f"{stage}@{level}" if level else stage
        return None

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.root) if path.is_relative_to(self.root) else path

    # --- the files of each stage, by what they hold ---------------------------------------

    @property
    def raw(self) -> Path:
        return self.only("download")

    # one of each per level of grid.tokenizer (a DVC matrix over ``tokenizer``)

    def tokenizer(self, tokenizer: str) -> Path:
        return self.only("tokenizer", tokenizer=tokenizer)

    def prepared(self, tokenizer: str) -> Path:
        return self.only("prepare", tokenizer=tokenizer)

    def fgrams(self, tokenizer: str) -> Path:
        return self.only("mine_fgrams", tokenizer=tokenizer)

    def fgram_metrics(self, tokenizer: str) -> Path:
        return self.only("mine_fgrams", "metrics", tokenizer=tokenizer)

    def train_stage(self, levels: Levels) -> str:
        """The train stage whose matrix holds the cells at these switch ``levels``."""
        for name, spec in self.stages.items():
            matrix = spec.get("matrix", {})
            at = {s.name: levels.get(s.name, s.low) for s in SWITCHES}
            if all(_holds(matrix.get(s.name, []), at[s.name]) for s in SWITCHES):
                return name
        raise StageError(
            f"dvc.yaml: no train stage holds {variant_name(levels)}; run python -m pipeline.grid "
            "to write the train stages from params.yaml's grid:"
        )

    def run_files(self, levels: Levels, seed: int) -> dict[str, Path]:
        """The files one train cell writes, by name (metrics.json, ckpt.pt, ...); a switch
        ``levels`` leaves out is at its low level."""
        at = {s.name: levels.get(s.name, s.low) for s in SWITCHES}
        return self.outs(self.train_stage(at), **at, seed=seed)

    def resume_files(self, levels: Levels, seed: int) -> tuple[Path, Path]:
        """(the cell's in-progress checkpoint, the file naming its MLflow run)."""
        name = self.run_files(levels, seed)["metrics.json"].parent.name
        return self.checkpoints / f"{name}.pt", self.checkpoints / f"{name}.json"

    @property
    def checkpoints(self) -> Path:
        """The in-progress checkpoints' folder: $NANOMOE_CHECKPOINTS, else .checkpoints/."""
        folder = os.environ.get(CHECKPOINTS_ENV, "").strip()
        return Path(folder).resolve() if folder else self.root / RESUME_DIR

    @property
    def ablation(self) -> Path:
        """The folder of every train cell's files: what the report stage reads."""
        (folder,) = self.data_deps("report")
        return folder

    @property
    def tune_dir(self) -> Path:
        return self.root / TUNE_DIR
