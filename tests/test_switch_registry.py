"""The switches are declared once (nanomoe/switches.py): no code threads them by hand, no module
imports its way round in a circle, and the registry agrees with the config and the model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from _project import REPO

from nanomoe.config import GPTConfig
from nanomoe.switches import SWITCHES, cells, data_files, full_grid, variant_name
from pipeline.layout import Layout
from pipeline.ops.code_deps import project_imports
from pipeline.ops.grid import rewrite

MODULES = sorted(p for pkg in ("nanomoe", "pipeline") for p in (REPO / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere (``TYPE_CHECKING`` blocks included)."""
    me = module_name(path)
    return {m for m in project_imports(REPO, me) if m in known and m != me}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself, with the path back (depth-first search)."""
    out = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    out.append([*path, start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return out


def test_no_import_cycle_in_the_library_or_the_pipeline():
    """Kills: pipeline/train/cell_run.py importing ``Cell`` from pipeline/train/cli.py again
    (even under ``TYPE_CHECKING``), or any other circle."""
    known = {module_name(p) for p in MODULES}
    graph = {module_name(p): imports_of(p, known) for p in MODULES}
    assert graph["pipeline.train.cli"] and "pipeline.train.cell" in graph["pipeline.train.cell_run"]
    assert cycles(graph) == []


def test_cycles_finds_a_circle_through_several_modules():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0] == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(REPO)) for p in MODULES])
def test_no_function_takes_the_switches_as_separate_parameters(path):
    """A new switch must not mean a new parameter everywhere: code takes a cell's levels.
    Kills: a ``def f(rope, moe, fgram)`` back in any module."""
    names = {s.name for s in SWITCHES}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = {a.arg for a in node.args.args + node.args.kwonlyargs}
            assert not names <= args, f"{path.name}:{node.lineno} {node.name}"


def test_every_switch_sets_gptconfig_fields_and_builds_a_valid_config_at_each_level():
    """Kills: a registry entry naming a field GPTConfig does not have."""
    fields = set(GPTConfig.__dataclass_fields__)
    for s in SWITCHES:
        for level in s.levels:
            assert set(s.config(level)) <= fields, s.name
    for levels in cells(full_grid()):
        assert GPTConfig(**{k: v for s in SWITCHES for k, v in s.config(levels[s.name]).items()})


def test_variant_names_keep_their_spelling():
    """Old results still read: the labels are the ones every committed cell carries, the
    tokenizer's last (``-bpe`` for char, ``+bpe``). Kills: a label respelled or reordered."""
    char = {"rope": True, "moe": True, "fgram": False, "tokenizer": "char"}
    assert variant_name(char) == "rope+moe-fgram-bpe"
    assert variant_name({**char, "tokenizer": "bpe"}) == "rope+moe-fgram+bpe"
    assert variant_name({"rope": False, "moe": False, "fgram": True}) == "abspos-moe+fgram-bpe"
    assert variant_name({}) == "abspos-moe-fgram-bpe"


FULL = cells(full_grid())


@pytest.mark.parametrize("levels", FULL, ids=[variant_name(c) for c in FULL])
def test_a_cells_train_stage_reads_its_own_tokenizers_data_and_only_that(levels):
    """A bpe cell's train stage depends on data/bpe/tokenizer.json and data/bpe/prepared
    (and data/bpe/fgrams.json with F-grams on), a char cell's on the data/char ones, in
    dvc.yaml as `python -m pipeline.grid` writes it for both tokenizers. Kills:
    ``Switch.needs`` ignoring ``always`` (char cells would lose their tokenizer and splits
    as deps, so a re-encoded corpus would not re-run them), ``data_files`` filling
    ``{tokenizer}`` with another level or leaving it unfilled, or F-gram data given to cells
    without F-grams."""
    tok = levels["tokenizer"]
    expected = [f"data/{tok}/tokenizer.json", f"data/{tok}/prepared"]
    expected += [f"data/{tok}/fgrams.json"] * levels["fgram"]
    assert data_files(levels) == expected
    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    layout = Layout(REPO, yaml.safe_load(rewrite(text, full_grid(), REPO))["stages"])
    deps = layout.data_deps(layout.train_stage(levels))
    assert [d.relative_to(REPO).as_posix() for d in deps] == expected


def test_a_switch_parses_its_levels_as_the_train_command_spells_them():
    rope = SWITCHES[0]
    assert [rope.parse(t) for t in ("true", "False", "on", "0")] == [True, False, True, False]
    with pytest.raises(ValueError, match="expected false or true, got 'maybe'"):
        rope.parse("maybe")
