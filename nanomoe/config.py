"""Typed configs for the model, the training loop, F-gram mining and sampling, and the error
for a bad input file.

Every rule lives here, checked once when a config is built, so a bad value fails with the
field's name before any tensor is allocated. The defaults are nanoGPT's CPU reference config
for ``shakespeare_char``: the benchmark trains exactly these.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nanomoe.switches import levels_of, variant_name


def _require(ok: bool, field: str, rule: str) -> None:
    if not ok:
        raise ValueError(f"{field}: {rule}")


def _is_a(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint``: int, float (an int is fine), bool,
    str, None, ``X | Y``, ``list[X]`` and ``dict[K, V]``; a bool is never an int."""
    origin = typing.get_origin(hint)
    if hint is type(None) or hint is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_is_a(v, item) for v in value)
    if origin is dict:
        key, val = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(
            _is_a(k, key) and _is_a(v, val) for k, v in value.items()
        )
    if hint is Any:
        return True
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class Config:
    """Base of every config dataclass: types checked at construction, ``from_dict`` that
    rejects unknown keys, ``to_dict``. Subclasses call ``super().__post_init__()``."""

    def __post_init__(self) -> None:
        for f in fields(self):  # reject a YAML typo like ``lr: 1e-3x`` up front
            value, hint = getattr(self, f.name), _hints(type(self))[f.name]
            if not _is_a(value, hint):
                raise ValueError(f"{f.name}: must be {_type_name(hint)}, got {value!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        """A copy with ``changes``, checked by the same rules."""
        return dataclasses.replace(self, **changes)


@dataclass
class GPTConfig(Config):
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    # RoPE on q and k; off means learned absolute position embeddings (nanoGPT).
    rope: bool = False
    rope_base: float = 10000.0
    # Top-k routed mixture of experts in place of every block's MLP.
    moe: bool = False
    n_experts: int = 4
    top_k: int = 1
    aux_loss_coef: float = 0.01
    z_loss_coef: float = 0.001
    # Mined token n-grams, contextualized and folded into the token embedding.
    fgram: bool = False
    fgram_max_n: int = 3
    fgram_n_head: int = 2
    # The tokenizer its ids come from (nanomoe/tokenizer.py): "char" or "bpe".
    tokenizer: str = "char"

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.tokenizer in ("char", "bpe"), "tokenizer", "must be char or bpe")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _require(int(getattr(self, name)) >= 1, name, "must be a positive integer")
        _require(self.n_embd % self.n_head == 0, "n_embd", "must be divisible by n_head")
        _require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        if self.rope:
            _require(
                self.head_size % 2 == 0, "n_embd", "head size n_embd/n_head must be even with rope"
            )
            _require(self.rope_base > 1.0, "rope_base", "must be > 1")
        if self.moe:
            _require(2 <= self.n_experts <= 64, "n_experts", "must be in [2, 64] with moe on")
            _require(1 <= self.top_k <= self.n_experts, "top_k", "must be in [1, n_experts]")
            _require(self.aux_loss_coef >= 0, "aux_loss_coef", "must be >= 0")
            _require(self.z_loss_coef >= 0, "z_loss_coef", "must be >= 0")
        if self.fgram:
            _require(
                2 <= self.fgram_max_n <= self.block_size,
                "fgram_max_n",
                "must be in [2, block_size] with fgram on",
            )
            _require(
                self.fgram_n_head >= 1 and self.n_embd % self.fgram_n_head == 0,
                "fgram_n_head",
                "must be >= 1 and divide n_embd",
            )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def variant(self) -> str:
        """Readable name of the ablation cell, e.g. ``rope+moe-fgram``."""
        return variant_name(levels_of(self))


@dataclass
class TrainConfig(Config):
    batch_size: int = 12
    max_iters: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: decay over max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20
    checkpoint_interval: int = 0  # 0: checkpoint at every eval
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "max_iters", "eval_interval", "eval_iters"):
            _require(int(getattr(self, name)) >= 1, name, "must be a positive integer")
        _require(self.warmup_iters >= 0, "warmup_iters", "must be >= 0")
        _require(self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(0 <= self.min_lr <= self.learning_rate, "min_lr", "must be in [0, learning_rate]")
        _require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _require(0 <= self.beta1 < 1, "beta1", "must be in [0, 1)")
        _require(0 <= self.beta2 < 1, "beta2", "must be in [0, 1)")
        _require(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables it)")
        _require(self.checkpoint_interval >= 0, "checkpoint_interval", "must be >= 0")
        if self.lr_decay_iters is not None:
            _require(self.lr_decay_iters >= 1, "lr_decay_iters", "must be >= 1 or null")
        ok_device = self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
        _require(ok_device, "device", "must be auto, cpu, cuda, cuda:N or mps")
        _require(self.dtype in ("auto", "fp32", "bf16"), "dtype", "must be auto, fp32 or bf16")


@dataclass
class MiningConfig(Config):
    """Which n-grams ``mine_fgrams`` keeps from the train split."""

    max_n: int = 6  # longest n-gram mined (a model may look up only the shorter ones)
    min_count: int = 5  # an n-gram must occur this often
    max_fgrams: int = 2048  # keep the top ones by score = count * (n - 1)
    max_tokens: int = 10_000_000  # mined over at most this many train tokens, the first ones

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.max_n >= 2, "max_n", "must be >= 2 (an F-gram has 2 or more characters)")
        _require(self.min_count >= 1, "min_count", "must be >= 1")
        _require(self.max_fgrams >= 1, "max_fgrams", "must be >= 1")
        _require(self.max_tokens >= 2, "max_tokens", "must be >= 2")


@dataclass
class SampleConfig(Config):
    """How text is sampled: one set of rules for params.yaml's ``sample:`` section and for
    ``python -m nanomoe.sample``, so a setting one accepts the other accepts too."""

    tokens: int = 300
    temperature: float = 0.8
    top_k: int | None = 200  # 0 or None: no top-k filtering (stored as None)

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.tokens >= 0, "tokens", "must be >= 0")
        _require(0 < self.temperature < math.inf, "temperature", "must be a number > 0")
        _require(
            self.top_k is None or self.top_k >= 0,
            "top_k",
            "must be a positive integer, or 0 (or null) for no top-k filtering",
        )
        if self.top_k == 0:
            self.top_k = None


def display_path(path: str | os.PathLike) -> str:
    """``path`` as the user would type it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


class InputError(ValueError):
    """A bad input file (truncated, garbage, out of date). The message starts with the file's
    path and ends with the fix, so a command prints it as the one line ``error: <message>``."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        self.path = Path(path)
        super().__init__(f"{display_path(path)}: {problem}; {fix}")


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The JSON document in ``path``; a missing or broken file raises an InputError naming it
    and ``fix``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "not found", fix) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err.__class__.__name__})", fix) from None
