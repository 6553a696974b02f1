"""Atomic writes: old file or new file, never half; ordinary permissions; errors that name
the destination."""

from __future__ import annotations

import os
import stat

import pytest

from nanomoe.atomic import atomic_write_bytes, atomic_write_text, current_umask


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield lambda mask: os.umask(mask)
    os.umask(before)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_gives_an_ordinary_file(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "new.txt", "new")
    (tmp_path / "old.txt").write_text("old")
    atomic_write_text(tmp_path / "old.txt", "replaced")
    for name in ("new.txt", "old.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_reading_the_umask_leaves_it_as_it_was(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027
    assert os.umask(0o022) == 0o027


def test_a_failed_write_names_the_destination_and_keeps_the_old_file(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(NotADirectoryError) as err:
        atomic_write_bytes(tmp_path / "blocker" / "out.bin", b"x")
    assert err.value.filename == str(tmp_path / "blocker" / "out.bin")
    target = tmp_path / "dir"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(IsADirectoryError) as err:
        atomic_write_text(target, "x")
    assert err.value.filename == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "dir"]  # no temp files
    assert (target / "keep.txt").read_text() == "keep"
