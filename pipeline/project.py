"""One way to open the project: ``Project.load()`` is its root, where each stage's files live
(dvc.yaml, through ``Layout``) and every setting (params.yaml, checked once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.layout import Layout
from pipeline.params import Params, load_params


@dataclass(frozen=True)
class Project:
    root: Path
    layout: Layout
    params: Params

    @classmethod
    def load(cls, root: Path | None = None) -> Project:
        """The project at ``root``, default the nearest folder upwards holding dvc.yaml; an
        unreadable dvc.yaml or a bad setting raises one line naming it."""
        layout = Layout.load(root)
        return cls(layout.root, layout, load_params(layout.root / "params.yaml"))
