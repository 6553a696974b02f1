"""dvc.yaml tells the truth about code: every stage's code deps are computed from the imports
of its ``python -m`` module (pipeline/ops/code_deps.py, written by ``python -m pipeline.grid``),
so a stage re-runs when code it runs changes, and only then."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _project import REPO, make_project, run_module

from pipeline.ops.code_deps import code_deps, import_closure, run_entry, stage_closure

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


@pytest.mark.parametrize("name", ["download", "report"])
def test_the_hand_written_stages_code_deps_are_computed_too(name):
    """The stages outside the grid's markers (download, report) hold the code deps their
    imports give, as the grid's do. Kills: a code dep of theirs edited by hand in dvc.yaml,
    or an import changed without ``python -m pipeline.grid``. (with_code_deps skipping them
    is killed by the next-but-one test.)"""
    deps = STAGES[name]["deps"]
    assert [d for d in deps if d.split("/")[0] in ("nanomoe", "pipeline")] == code_deps(
        REPO, STAGES[name]["cmd"]
    )


def test_no_stage_lists_a_code_path_by_hand_in_the_generator():
    """The generator holds no list of code paths: every ``.py`` path or code folder it writes
    comes from the imports. Kills: a hand list (grid.py's old BASE/READ/CODE) brought back."""
    source = (REPO / "pipeline" / "ops" / "grid.py").read_text(encoding="utf-8")
    assert '"pipeline/' not in source and '"nanomoe' not in source


def test_a_new_import_in_a_stage_module_becomes_a_dep_of_that_stage_only(tmp_path):
    """An import added to the download stage's module makes ``pipeline.grid`` list the
    imported module for download (and ``--check`` call dvc.yaml stale), not for the report.
    Kills: code deps read from a fixed list, from the wrong stage's module, or not written
    for the stages outside the grid's markers."""
    root = make_project(tmp_path)
    module = root / "pipeline" / "data" / "download.py"
    text = module.read_text(encoding="utf-8")
    module.write_text(
        text.replace(
            "import argparse\n", "import argparse\n\nimport pipeline.plots  # noqa: F401\n", 1
        ),
        encoding="utf-8",
    )
    check = run_module(root, "pipeline.grid", "--check")
    assert check.returncode == 2 and "dvc.yaml: stale" in check.stderr
    assert run_module(root, "pipeline.grid").returncode == 0
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert "pipeline/plots.py" in stages["download"]["deps"]
    assert "pipeline/plots.py" not in [d for d in stages["tokenizer"]["deps"]]


def test_the_report_stage_loads_neither_torch_nor_the_trainer():
    """The report reads metrics.json files and logs a summary run: it has no use for the
    model, and a trainer edit must not re-run it (nor torch's import cost it)."""
    assert "nanomoe/trainer.py" not in stage_closure(REPO, STAGES["report"]["cmd"])
    code = "import sys, pipeline.report.cli; print({'torch', 'nanomoe.trainer'} & {*sys.modules})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "set()", done.stdout + done.stderr


def test_import_closure_follows_function_level_and_relative_imports_and_counts_inits(tmp_path):
    """Kills: only top-level imports followed, relative imports dropped, or a parent
    package's __init__.py left out (each runs, so each is a dep)."""
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


def test_python_m_on_a_package_runs_its_init_and_main_and_a_whole_folder_is_one_dep(tmp_path):
    """Kills: a package's __main__.py missed, or a folder every module of which runs listed
    file by file (or a folder listed when one of its modules does not run)."""
    _write(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/run/__init__.py": "",
            "pipeline/run/__main__.py": "from .a import main\n",
            "pipeline/run/a.py": "from pipeline import c\n",
            "pipeline/b.py": "",
            "pipeline/c.py": "",
        },
    )
    cmd = "python -m pipeline.run --flag"
    assert stage_closure(tmp_path, cmd) == {
        "pipeline/__init__.py",
        "pipeline/run/__init__.py",
        "pipeline/run/__main__.py",
        "pipeline/run/a.py",
        "pipeline/c.py",
    }
    assert code_deps(tmp_path, cmd) == ["pipeline/__init__.py", "pipeline/c.py", "pipeline/run"]
