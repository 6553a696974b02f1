"""params.yaml, read and validated once, into typed configs.

Every stage goes through ``load_params``; a bad value fails here with the key's dotted name
(``params.yaml: model.n_head: ...``) before any stage does work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nanomoe.config import GPTConfig, TrainConfig

DATA_URL_ENV = "NANOMOE_DATA_URL"


class ParamsError(ValueError):
    """A bad setting; the message names the key and how to fix it."""


def repo_root() -> Path:
    """The project root: the parent repo for ``dvc exp run --temp/--queue`` (DVC sets
    DVC_ROOT there), else the nearest folder upwards from the cwd that holds dvc.yaml."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").exists():
            return d
    return here


# GPTConfig field -> where it lives in params.yaml, so errors name the key a user edits.
_MODEL_KEYS = {
    "vocab_size": "data/prepared/meta.json:vocab_size",
    **{k: f"model.{k}" for k in ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias")},
    "rope_base": "model.rope_base",
    **{k: f"moe.{k}" for k in ("n_experts", "top_k", "aux_loss_coef", "z_loss_coef")},
    "fgram_max_n": "fgram.max_n",
    "fgram_n_head": "fgram.n_head",
}


_MODEL_SECTION_KEYS = ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "rope_base")
_MOE_KEYS = ("n_experts", "top_k", "aux_loss_coef", "z_loss_coef")


def _section(raw: dict, name: str) -> dict:
    sec = raw.get(name)
    if not isinstance(sec, dict):
        raise ParamsError(f"params.yaml: section '{name}' is missing or not a mapping")
    return sec


def _typed(sec: dict, section: str, key: str, kind: type | tuple, default: Any = ...) -> Any:
    if key not in sec:
        if default is ...:
            raise ParamsError(f"params.yaml: {section}.{key} is missing")
        return default
    value = sec[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ParamsError(f"params.yaml: {section}.{key} must be {names}, got {value!r}")
    return value


@dataclass(frozen=True)
class DataParams:
    url: str
    sha256: str | None
    val_fraction: float

    @property
    def effective_url(self) -> str:
        return os.environ.get(DATA_URL_ENV) or self.url


@dataclass(frozen=True)
class FgramParams:
    mine_max_n: int
    min_count: int
    max_fgrams: int
    max_n: int
    n_head: int


@dataclass(frozen=True)
class SampleParams:
    prompt: str | None
    tokens: int
    temperature: float
    top_k: int | None


@dataclass
class Params:
    raw: dict
    data: DataParams
    fgram: FgramParams
    seeds: list[int]
    sample: SampleParams

    def model_config(
        self, vocab_size: int, rope: bool, moe: bool, fgram: bool, **overrides: Any
    ) -> GPTConfig:
        """The GPTConfig of one ablation cell (``overrides`` for what tuning varies)."""
        m, e = self.raw["model"], self.raw["moe"]
        for section, sec, keys in (("model", m, _MODEL_SECTION_KEYS), ("moe", e, _MOE_KEYS)):
            unknown = sorted(set(sec) - set(keys))
            missing = sorted(set(keys) - set(sec) - {"rope_base"})
            if unknown or missing:
                bad = f"unknown key {unknown[0]}" if unknown else f"{missing[0]} is missing"
                raise ParamsError(f"params.yaml: {section}: {bad}; keys are {list(keys)}")
        d = {
            "vocab_size": vocab_size,
            **{k: m[k] for k in ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias")},
            "rope_base": m.get("rope_base", 10000.0),
            **{k: e[k] for k in _MOE_KEYS},
            "fgram_max_n": self.fgram.max_n,
            "fgram_n_head": self.fgram.n_head,
            "rope": rope,
            "moe": moe,
            "fgram": fgram,
            **overrides,
        }
        try:
            return GPTConfig(**d)
        except (ValueError, TypeError) as err:
            field, _, rule = str(err).partition(": ")
            raise ParamsError(f"params.yaml: {_MODEL_KEYS.get(field, field)}: {rule}") from None

    def train_config(self, seed: int, **overrides: Any) -> TrainConfig:
        d = {**self.raw["train"], "seed": seed, **overrides}
        try:
            return TrainConfig.from_dict(d)
        except (ValueError, TypeError) as err:
            sep = ": " if str(err).startswith("unknown") else "."
            raise ParamsError(f"params.yaml: train{sep}{err}") from None


def load_params(path: str | os.PathLike | None = None) -> Params:
    path = Path(path) if path else repo_root() / "params.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the project root") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections")

    d = _section(raw, "data")
    sha = _typed(d, "data", "sha256", (str, type(None)))
    if sha is not None and (
        len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())
    ):
        raise ParamsError(
            "params.yaml: data.sha256 must be 64 hex digits, or null to skip the check"
        )
    data = DataParams(
        url=_typed(d, "data", "url", str),
        sha256=sha.lower() if sha else None,
        val_fraction=_typed(d, "data", "val_fraction", float, 0.1),
    )
    if not 0.0 < data.val_fraction < 1.0:
        raise ParamsError("params.yaml: data.val_fraction must be in (0, 1)")

    f = _section(raw, "fgram")
    fgram = FgramParams(**{k: _typed(f, "fgram", k, int) for k in FgramParams.__dataclass_fields__})
    if fgram.mine_max_n < max(2, fgram.max_n):
        raise ParamsError("params.yaml: fgram.mine_max_n must be >= 2 and >= fgram.max_n")
    if fgram.min_count < 1 or fgram.max_fgrams < 1:
        raise ParamsError("params.yaml: fgram.min_count and fgram.max_fgrams must be >= 1")

    seeds = raw.get("seeds", [1337])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ParamsError("params.yaml: seeds must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise ParamsError("params.yaml: seeds has repeated values")

    s = _section(raw, "sample")
    sample = SampleParams(
        prompt=_typed(s, "sample", "prompt", (str, type(None)), None),
        tokens=_typed(s, "sample", "tokens", int, 300),
        temperature=_typed(s, "sample", "temperature", float, 0.8),
        top_k=_typed(s, "sample", "top_k", (int, type(None)), 200),
    )
    if sample.tokens < 0 or sample.temperature <= 0:
        raise ParamsError("params.yaml: sample.tokens must be >= 0 and sample.temperature > 0")

    for name in ("model", "moe", "train"):
        _section(raw, name)
    params = Params(raw=raw, data=data, fgram=fgram, seeds=seeds, sample=sample)
    # Build every config once with a placeholder vocabulary, so that a bad model or train
    # value fails now, naming its key, rather than in the middle of a stage.
    for rope, moe, fg in ((False, False, False), (True, True, True)):
        params.model_config(vocab_size=2, rope=rope, moe=moe, fgram=fg)
    params.train_config(seed=seeds[0])
    return params
