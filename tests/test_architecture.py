"""The layout rules of the code base: who may import what, and modules short enough to read."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(p for pkg in ("nanomoe", "pipeline") for p in (REPO / pkg).rglob("*.py"))
IDS = [str(p.relative_to(REPO)) for p in MODULES]


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every package ``path`` imports, anywhere in the module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


LIBRARY = [p for p in MODULES if p.relative_to(REPO).parts[0] == "nanomoe"]


@pytest.mark.parametrize("path", LIBRARY, ids=[str(p.relative_to(REPO)) for p in LIBRARY])
def test_model_library_imports_no_pipeline_dvc_mlflow_or_optuna(path):
    assert not imported_packages(path) & {"pipeline", "dvc", "mlflow", "optuna"}


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_only_the_tracking_package_speaks_to_mlflow(path):
    if REPO / "pipeline" / "tracking" not in path.parents:
        assert "mlflow" not in imported_packages(path)


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_modules_are_short_enough_to_read_in_one_sitting(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 300


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_no_class_is_defined_inside_a_function(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [n.name for n in ast.walk(fn) if isinstance(n, ast.ClassDef)]
            assert not inner, f"{fn.name} defines {inner}"


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_no_module_shadows_the_standard_library(path):
    assert path.stem.startswith("__") or path.stem not in sys.stdlib_module_names


def test_every_requirement_is_pinned_the_servers_drivers_included():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    reqs = [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]
    assert all("==" in r for r in reqs), [r for r in reqs if "==" not in r]
    names = {r.split("==")[0].split("[")[0].lower() for r in reqs}
    assert {"psycopg", "psycopg-binary", "psutil", "torch"} <= names  # PostgreSQL, system metrics


def test_nvidia_bindings_are_an_optional_gpu_extra_not_a_requirement():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (gpu,) = project["optional-dependencies"]["gpu"]
    assert gpu.startswith("nvidia-ml-py==")
    assert "nvidia-ml-py" not in (REPO / "requirements.txt").read_text()


TEST_MODULES = sorted((REPO / "tests").glob("test_*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, dotted, relative ones with their dots; for ``from X
    import Y`` both X and X.Y (Y may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(f"{base}.{a.name}".replace("..", ".") for a in node.names)
    return names


@pytest.mark.parametrize("path", TEST_MODULES, ids=[p.name for p in TEST_MODULES])
def test_no_test_module_imports_another_test_module_or_conftest(path):
    """Shared helpers live in tests/_*.py; importing a test module runs its module-level code
    again under a second name and couples two files' tests. Kills: `from tests.test_trainer
    import train_config` put back into tests/test_bf16.py (and `from tests.conftest import
    ALL_VARIANTS` into tests/test_gpu_check.py)."""
    parts = {part for name in imported_modules(path) for part in name.split(".")}
    assert not {p for p in parts if p.startswith("test_") or p == "conftest"}
