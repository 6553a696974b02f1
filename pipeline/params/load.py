"""``load_params``: params.yaml read once, every section checked, into ``Params``, which
builds each cell's configs. A bad value raises a ParamsError naming its key, before any stage
does work."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanomoe.config import GPTConfig, MiningConfig, TrainConfig
from nanomoe.switches import BY_NAME, Levels, cells, config_fields, full
from pipeline.design.fraction import Design
from pipeline.layout import project_root
from pipeline.params.grid import read_design, read_grid, read_seeds
from pipeline.params.reader import read_yaml
from pipeline.params.sections import (
    KEYS,
    SECTIONS,
    AnalysisParams,
    SampleParams,
    TokenizerParams,
    build,
    check_known_keys,
    checked,
)
from pipeline.sources import DataParams
from pipeline.stage import ParamsError


@dataclass(frozen=True)
class Params:
    """Every setting of params.yaml, validated. ``model`` and ``train`` are the shared part
    of every cell's config; ``model_config``/``train_config`` make one cell's."""

    data: DataParams
    tokenizer: TokenizerParams
    mining: MiningConfig
    model: GPTConfig  # every switch on, so every rule was checked; vocab_size a placeholder
    train: TrainConfig
    sample: SampleParams
    grid: dict[str, list]  # every switch -> the levels the ablation trains, low first
    seeds: list[int]
    design: Design  # grid.fraction and grid.generators: which of the grid's cells train
    analysis: AnalysisParams
    # ``tune:`` as written: the tuner's own section, which pipeline/tune/settings.py checks
    # (with sections.read_section) when the tuner runs; None when params.yaml has none
    tune: Any = None

    def cells(self, *, first_half: bool = False) -> list[Levels]:
        """The grid's cells the design trains, in ``nanomoe.switches.cells`` order (all of
        them for the full design; ``first_half``: a fold-over's first half only)."""
        return [c for c in cells(self.grid) if self.design.keeps(coded(c), first_half=first_half)]

    def model_config(
        self,
        vocab_size: int,
        levels: Levels,
        overrides: Mapping[str, Any] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> GPTConfig:
        """One cell's GPTConfig: its switches' ``levels`` win over ``model:``; ``overrides``
        (what a tuner varies) are named in errors by ``keys`` (field -> its params.yaml key)."""
        cell = {"vocab_size": vocab_size, **config_fields(levels)}
        where = {"vocab_size": "meta.json vocab_size", **KEYS[GPTConfig], **(keys or {})}
        return checked(lambda: self.model.replace(**cell, **(overrides or {})), where)

    def train_config(
        self,
        seed: int,
        overrides: Mapping[str, Any] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> TrainConfig:
        where = {**KEYS[TrainConfig], **(keys or {})}
        return checked(lambda: self.train.replace(seed=seed, **(overrides or {})), where)


def coded(levels: Levels) -> dict[str, int]:
    """Each switch's code at ``levels``: +1 at its high level, -1 at its low."""
    return {name: 1 if level == BY_NAME[name].high else -1 for name, level in levels.items()}


def load_params(path: str | os.PathLike | None = None) -> Params:
    """Read and check params.yaml (default: the project root's)."""
    raw = read_yaml(Path(path) if path else project_root() / "params.yaml", SECTIONS)
    check_known_keys(raw)
    seeds = read_seeds(raw.get("seeds", [1337]))
    all_on = {"vocab_size": 2, **config_fields(full())}
    grid = read_grid(raw.get("grid"))
    params = Params(
        data=build(DataParams, KEYS[DataParams], raw),
        tokenizer=build(TokenizerParams, KEYS[TokenizerParams], raw),
        mining=build(MiningConfig, KEYS[MiningConfig], raw),
        model=build(GPTConfig, KEYS[GPTConfig], raw, **all_on),
        train=build(TrainConfig, KEYS[TrainConfig], raw, seed=seeds[0]),
        sample=build(SampleParams, KEYS[SampleParams], raw),
        grid=grid,
        seeds=seeds,
        design=read_design(raw.get("grid"), grid),
        analysis=build(AnalysisParams, KEYS[AnalysisParams], raw),
        tune=raw.get("tune"),
    )
    if params.mining.max_n < params.model.fgram_max_n:
        raise ParamsError(
            f"params.yaml: fgram.mine_max_n: must be >= fgram.max_n={params.model.fgram_max_n}"
        )
    return params
