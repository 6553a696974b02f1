"""One cell of the grid, checked before it trains: its switches' levels and seed, its
configs, data and F-grams, and the files it writes and resumes from.

``prepare_cell`` does everything that can fail before training (config, data, F-grams,
prompt, device), so a bad input is one line before a step is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanomoe.config import GPTConfig, TrainConfig
from nanomoe.data import load_meta, load_split
from nanomoe.device import resolve_device
from nanomoe.fgram import Fgram, load_fgrams
from nanomoe.switches import BY_NAME, SWITCHES, Levels, variant_name
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.resume import ResumePoint
from pipeline.stage import ParamsError, StageError

DATA_FILES = ("train.bin", "val.bin", "meta.json")


@dataclass
class Cell:
    """One cell of the grid, with everything checked before it trains."""

    levels: dict[str, Any]  # every switch's level, by name
    seed: int
    chars: list[str]
    config: GPTConfig
    train_cfg: TrainConfig
    fgrams: list[Fgram] | None
    train: np.ndarray
    val: np.ndarray
    files: dict[str, Path]  # the cell's outs in dvc.yaml, by file name
    inputs: list[Path]  # the files it trains on: prepared data, and what its switches need
    resume: ResumePoint

    @property
    def variant(self) -> str:
        return variant_name(self.levels)


def switch_inputs(layout: Layout, levels: Levels) -> list[Path]:
    """The files the switches at ``levels`` need (the registry's ``data``)."""
    return [layout.root / path for s in SWITCHES if levels[s.name] == s.high for path in s.data]


def prepare_cell(params: Params, layout: Layout, levels: Levels, seed: int) -> Cell:
    """Everything that can fail before training: config, data, F-grams, prompt, device."""
    levels = {s.name: levels[s.name] for s in SWITCHES}
    for name, level in levels.items():
        if level not in params.grid[name]:
            raise StageError(
                f"params.yaml: grid.{name}: does not hold {BY_NAME[name].spell(level)}, the "
                "level this cell trains; run python -m pipeline.grid to write dvc.yaml's train "
                "stages from the grid"
            )
    prepared = layout.require(layout.prepared)
    train_cfg = params.train_config(seed)
    try:
        resolve_device(train_cfg.device)
    except ValueError as err:
        raise ParamsError(f"params.yaml: train.{err}") from None
    meta = load_meta(prepared)
    config = params.model_config(meta["vocab_size"], levels)
    fgrams = None
    if config.fgram:
        fgrams = load_fgrams(
            layout.require(layout.fgrams),
            max_n=config.fgram_max_n,
            vocab_size=meta["vocab_size"],
            chars=meta["chars"],
        )
    unknown = sorted(set(params.sample.prompt or "") - set(meta["chars"]))
    if unknown:
        raise StageError(
            f"params.yaml: sample.prompt: has characters not in the corpus: {''.join(unknown)!r}"
        )
    return Cell(
        levels,
        seed,
        chars=meta["chars"],
        config=config,
        train_cfg=train_cfg,
        fgrams=fgrams,
        train=load_split(prepared, "train"),
        val=load_split(prepared, "val"),
        files=layout.run_files(levels, seed),
        inputs=[prepared / n for n in DATA_FILES] + switch_inputs(layout, levels),
        resume=ResumePoint(*layout.resume_files(levels, seed)),
    )
