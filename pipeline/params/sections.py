"""The sections of params.yaml: which key fills which field of which config dataclass.

``KEYS`` says which params.yaml key fills each field of each dataclass, and ``build`` makes
the dataclass from those keys, so every rule lives in the dataclass and every error names the
key a user edits (``params.yaml: moe.top_k: must be in [1, n_experts]``). A key left out
takes the dataclass's default; an unknown key is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

from nanomoe.config import Config, GPTConfig, MiningConfig, SampleConfig, TrainConfig
from nanomoe.vocab import MAX_VOCAB, MIN_VOCAB
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


@dataclass
class AnalysisParams(Config):
    """``analysis:``: how the report judges effects. An effect whose 90% interval lies
    strictly inside (-equivalence_margin, +equivalence_margin), in bits per byte, is
    negligible (pipeline/report/verdicts.py); null: no effect is called negligible."""

    equivalence_margin: float | None = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        m = self.equivalence_margin
        if m is not None and not (math.isfinite(m) and m > 0):
            raise ValueError(
                f"equivalence_margin: must be a positive number of bits per byte (e.g. 0.01), "
                f"or null to call no effect negligible; got {m!r}"
            )


def section_keys(section: str, cls: type, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {f.name: f"{section}.{f.name}" for f in fields(cls) if f.name not in skip}


# The params.yaml key of every config field: the one map from sections to dataclasses.
KEYS: dict[type, dict[str, str]] = {
    DataParams: section_keys("data", DataParams),
    TokenizerParams: section_keys("tokenizer", TokenizerParams),
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
    TrainConfig: section_keys("train", TrainConfig, skip=("seed",)),  # seed: the matrix's
    SampleParams: section_keys("sample", SampleParams),
    AnalysisParams: section_keys("analysis", AnalysisParams),
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
    "analysis",
)
OPTIONAL = ("analysis",)  # a params.yaml without it takes every default


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


def known_section(raw: Mapping[str, Any], section: str, keys: set[str]) -> dict:
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


def check_known_keys(raw: dict) -> None:
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"params.yaml: {unknown[0]}: unknown section; sections are {SECTIONS}")
    known: dict[str, set[str]] = {}
    for keys in KEYS.values():
        for key in keys.values():
            section, _, item = key.partition(".")
            known.setdefault(section, set()).add(item)
    for section, items in known.items():
        if section not in OPTIONAL or section in raw:
            known_section(raw, section, items)


def read_section(values: Any, cls: type[C], section: str) -> C:
    """Section ``section`` (its mapping, as written) as the dataclass ``cls``, each key a
    field, checked like the rest: for sections other modules own, such as ``tune``."""
    keys = section_keys(section, cls)
    known_section({section: values}, section, set(keys))
    return build(cls, keys, {section: values})
