"""The ablation's switches, declared once: what each one is called, which ``GPTConfig`` fields
it sets, how variant names spell it, and what a cell needs when it is on.

Everything that handles a cell (the train stage, dvc.yaml's train stages, MLflow, the report,
the tuner, the benches) iterates ``SWITCHES``; nothing names the switches one by one. A cell
is a mapping ``{switch name: level}`` (``Levels``) plus a seed.

Adding a switch: its model code, its ``GPTConfig`` field, an entry here, and its levels under
``grid:`` in params.yaml (then ``python -m pipeline.grid`` writes dvc.yaml's train stages).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Levels = Mapping[str, Any]  # one cell's level of every switch, by switch name


@dataclass(frozen=True)
class Switch:
    """One factor of the ablation with two levels: ``low`` (coded -1, the baseline) and
    ``high`` (coded +1)."""

    name: str  # the grid: key, the train command's flag, the metrics.json column
    labels: tuple[str, str]  # how a variant name spells the low and the high level
    low: Any = False
    high: Any = True
    fields: tuple[str, ...] = ()  # the GPTConfig fields it sets to its level; () = (name,)
    # files (from the project root) a cell needs at the high level; ``{name}`` in a path is
    # that switch's level as the cell spells it (``data/{tokenizer}/fgrams.json``)
    data: tuple[str, ...] = ()
    params: tuple[str, ...] = ()  # params.yaml keys a cell depends on at the high level
    always: bool = False  # its data at both levels too: its level chooses which files
    model: bool = True  # its level changes the model's computation (the tokenizer: the ids)

    @property
    def levels(self) -> tuple[Any, Any]:
        return (self.low, self.high)

    def has(self, value: Any) -> bool:
        """Whether ``value`` is one of the levels, type included (``True`` is not ``1``)."""
        return any(value == v and type(value) is type(v) for v in self.levels)

    def config(self, level: Any) -> dict[str, Any]:
        """The GPTConfig fields this switch sets at ``level``."""
        return {f: level for f in self.fields or (self.name,)}

    def label(self, level: Any) -> str:
        return self.labels[self.levels.index(level)]

    def needs(self, level: Any) -> bool:
        """Whether a cell at ``level`` needs this switch's data."""
        return self.always or level == self.high

    def spell(self, level: Any) -> str:
        """``level`` as a command line, a folder name and DVC's ``${item.<name>}`` write it:
        booleans in lower case."""
        return str(level).lower() if isinstance(level, bool) else str(level)

    def parse(self, text: str) -> Any:
        """The level spelled ``text`` (``true``, ``false``, ...); ValueError if none."""
        word = text.strip().lower()
        if all(isinstance(v, bool) for v in self.levels):
            word = {"1": "true", "yes": "true", "on": "true"}.get(word, word)
            word = {"0": "false", "no": "false", "off": "false"}.get(word, word)
        for level in self.levels:
            if self.spell(level) == word:
                return level
        raise ValueError(
            f"expected {' or '.join(self.spell(v) for v in self.levels)}, got {text!r}"
        )


SWITCHES: tuple[Switch, ...] = (
    # RoPE on q and k; off means learned absolute position embeddings (nanoGPT).
    Switch("rope", labels=("abspos", "rope")),
    # Top-k routed mixture of experts in place of every block's MLP.
    Switch("moe", labels=("-moe", "+moe"), params=("moe",)),
    # Mined n-grams, contextualized and folded into the token embedding.
    Switch(
        "fgram",
        labels=("-fgram", "+fgram"),
        data=("data/{tokenizer}/fgrams.json",),
        params=("fgram.max_n", "fgram.n_head"),
    ),
    # The tokenizer: characters, or a byte-level BPE learned from the train split. Every
    # cell reads its own tokenizer's files (data/char/..., data/bpe/...).
    Switch(
        "tokenizer",
        labels=("-bpe", "+bpe"),
        low="char",
        high="bpe",
        data=("data/{tokenizer}/tokenizer.json", "data/{tokenizer}/prepared"),
        params=("tokenizer.match_bytes",),
        always=True,
        model=False,
    ),
)
BY_NAME: dict[str, Switch] = {s.name: s for s in SWITCHES}


def data_files(levels: Levels) -> list[str]:
    """The files (from the project root) a cell at ``levels`` reads: each switch's ``data``
    where it needs it, its placeholders filled in with the cell's levels."""
    spelled = {s.name: s.spell(levels.get(s.name, s.low)) for s in SWITCHES}
    order = sorted(SWITCHES, key=lambda s: not s.always)  # the data every cell reads first
    return [
        path.format(**spelled)
        for s in order
        if s.needs(levels.get(s.name, s.low))
        for path in s.data
    ]


def baseline() -> dict[str, Any]:
    """Every switch at its low level: nanoGPT's model."""
    return {s.name: s.low for s in SWITCHES}


def full() -> dict[str, Any]:
    """Every switch of the model at its high level, the others (the tokenizer) at their low
    level: the full model, which the tuner tunes."""
    return {s.name: s.high if s.model else s.low for s in SWITCHES}


def full_grid() -> dict[str, list]:
    """Every switch at both levels: the full 2^k design."""
    return {s.name: list(s.levels) for s in SWITCHES}


def model_grid() -> dict[str, list]:
    """Every switch of the model at both levels, the others (the tokenizer) at their low
    level: the variants a benchmark on one token stream compares."""
    return {s.name: list(s.levels) if s.model else [s.low] for s in SWITCHES}


def variant_name(levels: Levels, named: Sequence[str] | None = None) -> str:
    """``rope+moe-fgram``: the label of each switch in ``named`` (default: every switch), in
    registry order. The first switch's labels are words (``rope``/``abspos``), the others'
    ``+name``/``-name``; where one of those comes first it reads ``name``/``no-name``
    (``no-moe+fgram``), so no name starts with a dash. A switch ``levels`` leaves out is at
    its low level."""
    shown = [s for s in SWITCHES if named is None or s.name in named]
    name = "".join(s.label(levels.get(s.name, s.low)) for s in shown)
    return {"+": name[1:], "-": f"no{name}"}.get(name[:1], name)


def config_fields(levels: Levels) -> dict[str, Any]:
    """The GPTConfig fields that ``levels`` set (a switch left out: its low level)."""
    out: dict[str, Any] = {}
    for s in SWITCHES:
        out.update(s.config(levels.get(s.name, s.low)))
    return out


def levels_of(config: Any) -> dict[str, Any]:
    """The levels a GPTConfig (or any object with the switches' fields) was built with."""
    return {s.name: getattr(config, (s.fields or (s.name,))[0]) for s in SWITCHES}


def cells(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every cell of ``grid`` (switch name -> its levels; a switch left out: its low level),
    in registry order with the low level first."""
    axes = [[v for v in s.levels if v in grid.get(s.name, [s.low])] for s in SWITCHES]
    return [dict(zip(BY_NAME, point, strict=True)) for point in itertools.product(*axes)]


def varying(grid: Mapping[str, Sequence[Any]]) -> list[Switch]:
    """The switches that ``grid`` gives both levels: the factors of its design."""
    return [s for s in SWITCHES if len(set(grid.get(s.name, ()))) == 2]


def grid_variant(levels: Levels, grid: Mapping[str, Sequence[Any]]) -> str:
    """A variant's name in ``grid``: the levels of its factors only (``rope+moe-fgram``); a
    factor held at one level is said once, in the report's header. A grid of one cell: every
    switch's level."""
    factors = [s.name for s in varying(grid)]
    return variant_name(levels, factors) if factors else variant_name(levels)
