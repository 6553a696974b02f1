"""dvc.yaml tells the truth about code: every stage's deps cover exactly the code it runs.

The tests read every stage's ``python -m`` command, follow the project imports it executes
(by AST, conservatively: every import anywhere in a module counts) and check that the stage's
``deps`` cover exactly that code: a stage re-runs when code it runs changes, and only then.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _project import REPO

from pipeline.grid import DATA_STAGES

PROJECT_PACKAGES = ("nanomoe", "pipeline")
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def where(name: str) -> str:
    """Where a stage's deps are written: the grid's stages come from pipeline/grid.py."""
    if name in DATA_STAGES:
        return f"pipeline/grid.py's DATA_STAGES[{name!r}] (then python -m pipeline.grid)"
    if "seed" in STAGES[name].get("matrix", {}):
        return "pipeline/grid.py's CODE (then python -m pipeline.grid)"
    return "dvc.yaml"


# --- the import closure, by AST -----------------------------------------------------------


def module_file(root: Path, module: str) -> Path | None:
    """The file that importing ``module`` executes under ``root``: a package's __init__.py
    (a package wins over a same-named .py, as in Python), else the .py file, else None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.parent / f"{base.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_project(module: str) -> bool:
    return module.split(".")[0] in PROJECT_PACKAGES


def project_imports(root: Path, module: str) -> set[str]:
    """Project modules that ``module``'s source may import: every Import and ImportFrom node
    anywhere in it (function bodies, ``if TYPE_CHECKING:``, try/except), relative ones
    resolved. ``from pkg import name`` also imports ``pkg.name`` when that is a module."""
    path = module_file(root, module)
    assert path is not None, f"{module} has no file under {root}"
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                if node.level - 1 >= len(package):
                    raise ImportError(f"{path}: relative import beyond the top-level package")
                parts = package[: len(package) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            for alias in node.names:
                if alias.name != "*" and module_file(root, f"{base}.{alias.name}"):
                    found.add(f"{base}.{alias.name}")
    return {m for m in found if _is_project(m)}


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a submodule runs every __init__."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def run_entry(root: Path, module: str) -> list[str]:
    """The modules that ``python -m module`` executes first: the module and its parent
    packages, plus ``module.__main__`` when the module is a package."""
    mods = _with_parents(module)
    path = module_file(root, module)
    if path is not None and path.name == "__init__.py":
        mods.append(f"{module}.__main__")
    return mods


def import_closure(root: Path, modules: list[str]) -> set[str]:
    """Every project file (posix, relative to ``root``) that running ``modules`` may execute.
    A project module that is imported but has no file raises ModuleNotFoundError."""
    seen: set[str] = set()
    todo = [(m, "the command line") for m in modules if _is_project(m)]
    while todo:
        module, importer = todo.pop()
        for mod in _with_parents(module):
            if mod in seen:
                continue
            if module_file(root, mod) is None:
                raise ModuleNotFoundError(f"{importer} imports {mod}, which has no file")
            seen.add(mod)
            src = module_file(root, mod).relative_to(root).as_posix()
            todo.extend((m, src) for m in project_imports(root, mod))
    return {module_file(root, m).relative_to(root).as_posix() for m in seen}


def cmd_modules(cmd: str | list[str]) -> list[str]:
    """The modules of every ``python -m <module>`` in a stage's cmd (a string or a list)."""
    text = "\n".join(cmd) if isinstance(cmd, list) else cmd
    return re.findall(r"\bpython[\d.]*\s+-m\s+([A-Za-z_][\w.]*)", text)


def stage_closure(root: Path, stage: dict) -> set[str]:
    modules = [m for mod in cmd_modules(stage["cmd"]) for m in run_entry(root, mod)]
    return import_closure(root, modules)


def stage_deps(stage: dict) -> list[str]:
    deps = stage.get("deps", [])
    return [d if isinstance(d, str) else next(iter(d)) for d in deps]


def _covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


# --- dvc.yaml against the code -------------------------------------------------------------


@pytest.mark.parametrize("name", list(STAGES), ids=list(STAGES))
def test_every_module_a_stage_imports_is_a_declared_dep(name):
    stage = STAGES[name]
    assert cmd_modules(stage["cmd"]), f"stage {name} runs no `python -m` module: {stage['cmd']}"
    closure = stage_closure(REPO, stage)
    deps = stage_deps(stage)
    missing = sorted(f for f in closure if not _covered(f, deps))
    assert not missing, (
        f"stage {name} imports {', '.join(missing)} but dvc.yaml does not declare them as deps; "
        f"add them in {where(name)}"
    )


@pytest.mark.parametrize("name", list(STAGES), ids=list(STAGES))
def test_no_stage_declares_code_it_does_not_import(name):
    stage = STAGES[name]
    closure = stage_closure(REPO, stage)
    unused = []
    for dep in stage_deps(stage):
        path = REPO / dep
        if dep.endswith(".py") and dep not in closure:
            unused.append(dep)
        elif dep.split("/")[0] in PROJECT_PACKAGES and path.is_dir():
            files = sorted(
                p.relative_to(REPO).as_posix()
                for p in path.rglob("*.py")
                if "__pycache__" not in p.parts
            )
            unused += [f for f in files if f not in closure]
    assert not unused, (
        f"stage {name} declares {', '.join(unused)} as deps but never imports them, "
        f"so it re-runs when they change; remove them from {where(name)}"
    )


def test_the_report_stage_loads_neither_torch_nor_the_trainer():
    """The report reads metrics.json files and logs a summary run: it has no use for the
    model, and a trainer edit must not re-run it (nor torch's import cost it)."""
    assert "nanomoe/trainer.py" not in stage_closure(REPO, STAGES["report"])
    code = (
        "import sys, pipeline.report; print(sorted({'torch', 'nanomoe.trainer'} & {*sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def test_import_closure_follows_function_level_and_relative_imports_and_counts_inits(tmp_path):
    _write(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/a.py": "import os\n\n\ndef f():\n    from pipeline import b\n",
            "pipeline/b.py": "import numpy\nimport nanomoe.x\n",
            "pipeline/unused.py": "import nanomoe.unused\n",
            "nanomoe/__init__.py": "",
            "nanomoe/x.py": (
                "from typing import TYPE_CHECKING\n\nfrom .sub import deep\n\n"
                "if TYPE_CHECKING:\n    from . import typed\n"
            ),
            "nanomoe/typed.py": "",
            "nanomoe/sub/__init__.py": "from ..x import deep as _  # noqa\n",
            "nanomoe/sub/deep.py": "from .. import config\n",
            "nanomoe/config.py": "",
            "nanomoe/unused.py": "",
        },
    )
    assert import_closure(tmp_path, run_entry(tmp_path, "pipeline.a")) == {
        "pipeline/__init__.py",
        "pipeline/a.py",
        "pipeline/b.py",
        "nanomoe/__init__.py",
        "nanomoe/x.py",
        "nanomoe/typed.py",
        "nanomoe/sub/__init__.py",
        "nanomoe/sub/deep.py",
        "nanomoe/config.py",
    }


def test_python_m_on_a_package_runs_its_init_and_main(tmp_path):
    _write(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/__main__.py": "from .a import main\n",
            "pipeline/a.py": "",
            "pipeline/b.py": "",
        },
    )
    stage = {"cmd": "python -m pipeline --flag"}
    assert stage_closure(tmp_path, stage) == {
        "pipeline/__init__.py",
        "pipeline/__main__.py",
        "pipeline/a.py",
    }
