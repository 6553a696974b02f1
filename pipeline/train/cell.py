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
from nanomoe.data import load_split
from nanomoe.device import resolve_device
from nanomoe.fgram import Fgram, load_fgrams
from nanomoe.switches import BY_NAME, SWITCHES, Levels, data_files, grid_variant
from nanomoe.tokenizer import Tokenizer
from pipeline.data.tokens import read_tokens
from pipeline.layout import Layout
from pipeline.params import Params
from pipeline.project import Project
from pipeline.stage import ParamsError, StageError
from pipeline.train.resume import ResumePoint


@dataclass
class Cell:
    """One cell of the grid, with everything checked before it trains."""

    levels: dict[str, Any]  # every switch's level, by name
    seed: int
    tokenizer: Tokenizer  # the one its data was encoded with
    meta: dict  # its prepared data's meta.json: token counts, characters and bytes per split
    config: GPTConfig
    train_cfg: TrainConfig
    fgrams: list[Fgram] | None
    train: np.ndarray
    val: np.ndarray
    files: dict[str, Path]  # the cell's outs in dvc.yaml, by file name
    inputs: list[Path]  # the files it trains on: prepared data, and what its switches need
    resume: ResumePoint

    variant: str  # its name: the levels of the factors the grid varies (``rope+moe-fgram``)


def switch_inputs(layout: Layout, levels: Levels) -> list[Path]:
    """The files the switches at ``levels`` need (the registry's ``data``; a folder: its
    files)."""
    paths = [layout.root / path for path in data_files(levels)]
    return [f for p in paths for f in (sorted(p.iterdir()) if p.is_dir() else [p])]


def budget(params: Params, meta: dict, seed: int) -> TrainConfig:
    """The cell's TrainConfig: ``train.max_iters`` steps, or with ``tokenizer.match_bytes``
    as many as see the bytes a char cell sees: max_iters x (its train tokens) / (the train
    split's characters, one more per document, as a char cell's tokens). A step takes the
    same tokens in every cell, so fewer steps where a token holds more text. A char cell:
    max_iters."""
    if not params.tokenizer.match_bytes:
        return params.train_config(seed)
    char_tokens = meta["text"]["train"]["chars"] + meta.get("documents", {}).get("train", 0)
    steps = max(1, round(params.train.max_iters * meta["n_train"] / char_tokens))
    keys = {"max_iters": "tokenizer.match_bytes (train.max_iters scaled)"}
    return params.train_config(seed, {"max_iters": steps}, keys)


def prepare_cell(project: Project, levels: Levels, seed: int) -> Cell:
    """Everything that can fail before training: config, data, F-grams, prompt, device."""
    params, layout = project.params, project.layout
    levels = {s.name: levels.get(s.name, s.low) for s in SWITCHES}
    for name, level in levels.items():
        if level not in params.grid[name]:
            raise StageError(
                f"params.yaml: grid.{name}: does not hold {BY_NAME[name].spell(level)}, the "
                "level this cell trains; run python -m pipeline.grid to write dvc.yaml's train "
                "stages from the grid"
            )
    kind = levels["tokenizer"]
    tok, meta = read_tokens(layout, kind, params.model.block_size)
    prepared = layout.prepared(kind)
    train_cfg = budget(params, meta, seed)
    try:
        resolve_device(train_cfg.device)
    except ValueError as err:
        raise ParamsError(f"params.yaml: train.{err}") from None
    config = params.model_config(meta["vocab_size"], levels)
    fgrams = None
    if config.fgram:
        fgrams = load_fgrams(
            layout.require(layout.fgrams(kind)),
            max_n=config.fgram_max_n,
            vocab_size=meta["vocab_size"],
            chars=tok,
        )
    if tok.kind == "char":  # a byte-level BPE encodes any text
        unknown = sorted(set(params.sample.prompt or "") - set(tok.chars))
        if unknown:
            raise StageError(
                "params.yaml: sample.prompt: has characters not in the corpus: "
                f"{''.join(unknown)!r}; use only the corpus's characters, or a bpe cell"
            )
    return Cell(
        levels,
        seed,
        variant=grid_variant(levels, params.grid),
        tokenizer=tok,
        meta=meta,
        config=config,
        train_cfg=train_cfg,
        fgrams=fgrams,
        train=load_split(prepared, "train"),
        val=load_split(prepared, "val"),
        files=layout.run_files(levels, seed),
        inputs=switch_inputs(layout, levels),
        resume=ResumePoint(*layout.resume_files(levels, seed)),
    )
