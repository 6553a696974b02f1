"""The code a stage runs, from its imports: what ``python -m pipeline.grid`` writes as each
stage's code ``deps`` in dvc.yaml, so a code change re-runs exactly the stages it touches.

From the modules of a stage's ``python -m`` command, the closure follows every ``import`` of
the project's packages by AST, conservatively: an import anywhere in a module counts (function
bodies, ``if TYPE_CHECKING:``, try/except), relative imports resolved, each parent package's
``__init__.py`` and a package's ``__main__.py`` included. A folder whose every module is in
the closure is written as the folder (``nanomoe``, ``pipeline/train``).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import yaml

from pipeline.stage import StageError

PACKAGES = ("nanomoe", "pipeline")  # the project's code: every other import is a library


def module_file(root: Path, module: str) -> Path | None:
    """The file that importing ``module`` executes under ``root``: a package's __init__.py
    (a package wins over a same-named .py, as in Python), else the .py file, else None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.parent / f"{base.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def project_imports(root: Path, module: str) -> set[str]:
    """Project modules that ``module``'s source may import. ``from pkg import name`` also
    imports ``pkg.name`` when that is a module."""
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


def stage_closure(root: Path, cmd: str | list[str]) -> set[str]:
    """Every project file the stage with this ``cmd`` may execute."""
    return import_closure(root, [m for mod in cmd_modules(cmd) for m in run_entry(root, mod)])


def package_files(root: Path, folder: str) -> set[str]:
    """Every module under ``folder`` (posix, relative to ``root``), subfolders included."""
    return {
        p.relative_to(root).as_posix()
        for p in (root / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def code_deps(root: Path, cmd: str | list[str]) -> list[str]:
    """The stage's code deps: its closure, each folder whose every module it runs as the
    folder, packages before their modules' files, in path order."""
    closure = stage_closure(root, cmd)
    under = functools.cache(lambda folder: package_files(root, folder))  # a walk per folder
    deps: list[str] = []
    for file in sorted(closure, key=lambda f: (f.count("/"), f)):
        if any(file.startswith(d + "/") for d in deps):
            continue  # inside a folder already listed
        folder = file.rpartition("/")[0]
        whole = None
        for i in range(1, folder.count("/") + 2):  # the outermost folder wholly run
            top = "/".join(folder.split("/")[:i])
            if under(top) <= closure:
                whole = top
                break
        deps.append(whole or file)
    return sorted(set(deps), key=lambda d: (d.startswith("pipeline"), d))


def with_code_deps(text: str, root: Path) -> str:
    """``text`` (dvc.yaml) with each stage's code deps, the last entries of its ``deps:``,
    computed anew; its other deps (data) stay as written, in their order."""
    stages = yaml.safe_load(text)["stages"]
    by_modules: dict[tuple[str, ...], list[str]] = {}  # the train stages share one closure
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        head = re.match(r"^  ([\w-]+):", line)
        name = head and head[1]
        if not name or not cmd_modules(stages.get(name, {}).get("cmd", "")):
            continue
        while i < len(lines) and lines[i] != "    deps:" and not re.match(r"^  \S", lines[i]):
            out.append(lines[i])
            i += 1
        if i == len(lines) or lines[i] != "    deps:":
            raise StageError(f"dvc.yaml: stage {name}: has no deps: list; add `deps:` under it")
        out.append(lines[i])
        i += 1
        while i < len(lines) and lines[i].startswith("      - "):
            if lines[i][8:].split("/")[0].split()[0] not in PACKAGES:
                out.append(lines[i])
            i += 1
        modules = tuple(cmd_modules(stages[name]["cmd"]))
        if modules not in by_modules:
            by_modules[modules] = code_deps(root, stages[name]["cmd"])
        out += [f"      - {d}" for d in by_modules[modules]]
    return "\n".join(out)
