"""params.yaml, read and validated once, into the typed config dataclasses.

One path from the file to the configs: ``KEYS`` says which params.yaml key fills each field of
each dataclass, and ``build`` makes the dataclass from those keys, so every rule lives in the
dataclass and every error names the key a user edits (``params.yaml: moe.top_k: must be in
[1, n_experts]``). A key left out takes the dataclass's default; an unknown key is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nanomoe.config import Config, GPTConfig, MiningConfig, SampleConfig, TrainConfig, display_path
from nanomoe.switches import BY_NAME, SWITCHES, Levels, config_fields, full, full_grid
from nanomoe.vocab import MAX_VOCAB, MIN_VOCAB
from pipeline.layout import project_root
from pipeline.sources import DataParams
from pipeline.stage import ParamsError

C = TypeVar("C", bound=Config)


@dataclass
class SampleParams(SampleConfig):
    """``sample:``: the prompt, plus SampleConfig's rules shared with ``nanomoe.sample``
    (``top_k`` 0 or null turns top-k filtering off)."""

    prompt: str | None = None  # None: the first character of the validation split


@dataclass
class TokenizerParams(Config):
    """``tokenizer:``: the BPE's size and sample, and the training budget across tokenizers."""

    vocab_size: int = 1024  # BPE ids, the end-of-document token included
    train_max_chars: int = 20_000_000  # BPE learns from the first this-many train characters
    # false: every cell trains train.max_iters steps. true: each tokenizer's steps are scaled
    # so that its cells see the bytes a char cell sees (its train tokens per character)
    match_bytes: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        lo, hi = MIN_VOCAB, MAX_VOCAB
        if not lo <= self.vocab_size <= hi:
            raise ValueError(
                f"vocab_size: must be in [{lo}, {hi}]: the 256 bytes plus the end-of-document "
                f"token at least, and ids that fit the uint16 token files at most; got "
                f"{self.vocab_size}"
            )
        if self.train_max_chars < 1:
            raise ValueError("train_max_chars: must be a positive integer")


def _section_keys(section: str, cls: type, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {f.name: f"{section}.{f.name}" for f in fields(cls) if f.name not in skip}


# The params.yaml key of every config field: the one map from sections to dataclasses.
KEYS: dict[type, dict[str, str]] = {
    DataParams: _section_keys("data", DataParams),
    TokenizerParams: _section_keys("tokenizer", TokenizerParams),
    MiningConfig: {
        "max_n": "fgram.mine_max_n",
        "min_count": "fgram.min_count",
        "max_fgrams": "fgram.max_fgrams",
        "max_tokens": "fgram.mine_max_tokens",
    },
    GPTConfig: {
        **{f: f"model.{f}" for f in ("block_size", "n_layer", "n_head", "n_embd", "dropout")},
        **{f: f"model.{f}" for f in ("bias", "rope_base")},
        **{f: f"moe.{f}" for f in ("n_experts", "top_k", "aux_loss_coef", "z_loss_coef")},
        "fgram_max_n": "fgram.max_n",
        "fgram_n_head": "fgram.n_head",
    },
    TrainConfig: _section_keys("train", TrainConfig, skip=("seed",)),  # seed: the matrix's
    SampleParams: _section_keys("sample", SampleParams),
}
SECTIONS = (
    "data",
    "tokenizer",
    "fgram",
    "model",
    "moe",
    "train",
    "grid",
    "seeds",
    "sample",
    "tune",
)


def build(cls: type[C], keys: Mapping[str, str], raw: Mapping[str, Any], **fixed: Any) -> C:
    """The dataclass ``cls`` from the params.yaml ``keys`` (field -> ``section.key``) found in
    ``raw``, plus ``fixed`` fields; a ValueError of its rules becomes a ParamsError naming
    the key."""
    values = {}
    for name, key in keys.items():
        section, _, item = key.partition(".")
        if item in (raw.get(section) or {}):
            values[name] = raw[section][item]
    values.update(fixed)
    for f in fields(cls):
        if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise ParamsError(f"params.yaml: {keys.get(f.name, f.name)}: is missing")
    return checked(lambda: cls(**values), keys)


def checked(make: Any, keys: Mapping[str, str]) -> Any:
    """``make()``, with a config rule's ``ValueError("field: rule")`` re-raised as a one-line
    ParamsError that names the field's params.yaml key."""
    try:
        return make()
    except ParamsError:
        raise
    except (ValueError, TypeError) as err:
        name, _, rule = str(err).partition(": ")
        raise ParamsError(f"params.yaml: {keys.get(name, name)}: {rule}") from None


def _section(raw: Mapping[str, Any], section: str, keys: set[str]) -> dict:
    """Section ``section`` of ``raw``, which must be a mapping of known ``keys`` only."""
    sec = raw.get(section)
    if not isinstance(sec, dict):
        raise ParamsError(f"params.yaml: {section}: section is missing or not a mapping")
    extra = sorted(set(sec) - keys)
    if extra:
        raise ParamsError(
            f"params.yaml: {section}: unknown key {extra[0]}; keys are {sorted(keys)}"
        )
    return sec


def _check_known_keys(raw: dict) -> None:
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"params.yaml: {unknown[0]}: unknown section; sections are {SECTIONS}")
    known: dict[str, set[str]] = {}
    for keys in KEYS.values():
        for key in keys.values():
            section, _, item = key.partition(".")
            known.setdefault(section, set()).add(item)
    for section, items in known.items():
        _section(raw, section, items)


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
    _raw: dict = field(repr=False)  # for ``read`` only: sections other modules own

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

    def read(self, cls: type[C], section: str) -> C:
        """Section ``section`` as the dataclass ``cls`` (each key a field), checked like the
        rest: for sections other modules own, such as ``tune``."""
        keys = _section_keys(section, cls)
        _section(self._raw, section, set(keys))
        return build(cls, keys, self._raw)


class ParamsLoader(yaml.SafeLoader):
    """YAML for params.yaml: PyYAML's safe loader, plus ``1e-3``, ``5E-4``, ``-1e-5`` read as
    floats. YAML 1.1 (PyYAML) wants a dot in a float and reads those as strings; YAML 1.2
    (DVC's reader) and every user read them as numbers. Strings that are not numbers stay
    strings, so a typo in a float field is still an error naming the key."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_grid(grid: Any) -> dict[str, list]:
    """``grid:``, checked: each key a switch of ``nanomoe/switches.py``, each value a list of
    its levels. A switch left out is held at its low level; no ``grid:`` at all trains every
    switch at both levels."""
    if grid is None:
        return full_grid()
    if not isinstance(grid, dict):
        raise ParamsError(
            "params.yaml: grid: must map each switch to its levels, e.g. rope: [false, true]"
        )
    for name, values in grid.items():
        switch = BY_NAME.get(name)
        if switch is None:
            raise ParamsError(
                f"params.yaml: grid.{name}: unknown switch; switches are "
                f"{', '.join(BY_NAME)} (nanomoe/switches.py)"
            )
        spelled = " and ".join(switch.spell(v) for v in switch.levels)
        if not isinstance(values, list) or not values:
            raise ParamsError(
                f"params.yaml: grid.{name}: must be a non-empty list of its levels ({spelled})"
            )
        for v in values:
            if not switch.has(v):
                raise ParamsError(
                    f"params.yaml: grid.{name}: {v!r} is not a level of {name}; "
                    f"its levels are {spelled}"
                )
        if len(values) != len(set(values)):
            raise ParamsError(f"params.yaml: grid.{name}: has repeated levels {values!r}")
    return {s.name: [v for v in s.levels if v in grid.get(s.name, [s.low])] for s in SWITCHES}


def load_params(path: str | os.PathLike | None = None) -> Params:
    """Read and check params.yaml (default: the project root's); a bad value raises a
    ParamsError naming its key, before any stage does work."""
    path = Path(path) if path else project_root() / "params.yaml"
    shown = display_path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=ParamsLoader)
    except FileNotFoundError:
        raise ParamsError(f"{shown}: not found; run from the project root") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{shown}: not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(
            f"{shown}: not valid YAML{where} ({err.__class__.__name__}); fix that line"
        ) from None
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{shown}: must be a mapping of sections ({', '.join(SECTIONS)}), "
            f"got {type(raw).__name__}; see the shipped params.yaml"
        )
    _check_known_keys(raw)

    seeds = raw.get("seeds", [1337])
    ok = isinstance(seeds, list) and seeds
    if not ok or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ParamsError("params.yaml: seeds: must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise ParamsError("params.yaml: seeds: has repeated values")

    all_on = {"vocab_size": 2, **config_fields(full())}
    params = Params(
        data=build(DataParams, KEYS[DataParams], raw),
        tokenizer=build(TokenizerParams, KEYS[TokenizerParams], raw),
        mining=build(MiningConfig, KEYS[MiningConfig], raw),
        model=build(GPTConfig, KEYS[GPTConfig], raw, **all_on),
        train=build(TrainConfig, KEYS[TrainConfig], raw, seed=seeds[0]),
        sample=build(SampleParams, KEYS[SampleParams], raw),
        grid=read_grid(raw.get("grid")),
        seeds=seeds,
        _raw=raw,
    )
    if params.mining.max_n < params.model.fgram_max_n:
        raise ParamsError(
            f"params.yaml: fgram.mine_max_n: must be >= fgram.max_n={params.model.fgram_max_n}"
        )
    return params
