"""``grid:`` and ``seeds`` of params.yaml: the factors the ablation trains, the fraction of
their cells it trains (``grid.fraction``, ``grid.generators``), and its blocks."""

from __future__ import annotations

from typing import Any

from nanomoe.switches import BY_NAME, SWITCHES, full_grid, varying
from pipeline.design.fraction import Design, DesignError, design
from pipeline.stage import ParamsError

DESIGN_KEYS = ("fraction", "generators")  # grid: keys that are not switches


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
        if name in DESIGN_KEYS:
            continue
        switch = BY_NAME.get(name)
        if switch is None:
            raise ParamsError(
                f"params.yaml: grid.{name}: unknown switch; switches are "
                f"{', '.join(BY_NAME)} (nanomoe/switches.py), and the design's keys are "
                f"{' and '.join(DESIGN_KEYS)}"
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


def read_design(raw: Any, grid: dict[str, list]) -> Design:
    """``grid.fraction`` and ``grid.generators`` (``raw``: ``grid:`` as written), checked
    against the factors of ``grid`` (``read_grid``'s): the full design when both are absent."""
    raw = raw if isinstance(raw, dict) else {}
    factors = [s.name for s in varying(grid)]
    try:
        return design(factors, raw.get("fraction"), raw.get("generators"))
    except DesignError as err:
        raise ParamsError(f"params.yaml: {err}") from None


def read_seeds(seeds: Any) -> list[int]:
    """``seeds``, checked: a non-empty list of distinct integers (one block each)."""
    ok = isinstance(seeds, list) and seeds
    if not ok or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ParamsError("params.yaml: seeds: must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise ParamsError("params.yaml: seeds: has repeated values")
    return seeds
