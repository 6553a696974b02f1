"""params.yaml's reader: a key written twice is refused with both its lines, and the project
opens in one call from anywhere inside it."""

from __future__ import annotations

import contextlib

import pytest
from _project import make_project

from pipeline.params.reader import read_yaml
from pipeline.project import Project
from pipeline.stage import ParamsError

SECTIONS = ("train", "model")


def test_a_key_written_twice_names_its_full_key_and_both_lines(tmp_path):
    """Kills: the duplicate check skipped for nested mappings, or the line numbers of the
    first and second key swapped or off by one."""
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  n_head: 4\ntrain:\n  max_iters: 20\n  lr: 1\n  max_iters: 3\n")
    with pytest.raises(ParamsError) as err, contextlib.chdir(tmp_path):
        read_yaml(path, SECTIONS)
    assert str(err.value) == (
        "params.yaml: train.max_iters: written twice, at lines 4 and 6 (the second silently "
        "wins); keep one"
    )


def test_a_section_written_twice_is_refused_too(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  max_iters: 20\nmodel: {}\ntrain:\n  max_iters: 3\n")
    with pytest.raises(ParamsError, match=r"^params.yaml: train: written twice, at lines 1 and 4"):
        with contextlib.chdir(tmp_path):
            read_yaml(path, SECTIONS)


def test_the_same_key_in_two_sections_is_no_duplicate(tmp_path):
    """``n_head`` under model: and fgram: (as the shipped params.yaml has it) are two keys.
    Kills: duplicates looked for across the whole file rather than per mapping."""
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  n_head: 4\nfgram:\n  n_head: 2\nseeds: [1, 2]\n")
    assert read_yaml(path, SECTIONS) == {
        "model": {"n_head": 4},
        "fgram": {"n_head": 2},
        "seeds": [1, 2],
    }


def test_project_load_from_a_subfolder_opens_the_projects_root_and_params(tmp_path):
    """Kills: Project.load reading params.yaml from the working directory rather than the
    root that holds dvc.yaml."""
    root = make_project(tmp_path)
    (root / "experiments").mkdir()
    with contextlib.chdir(root / "experiments"):
        project = Project.load()
    assert project.root == root.resolve() == project.layout.root
    assert project.params.train.max_iters == 12  # the tiny project's, not the repo's
