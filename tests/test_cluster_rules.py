"""The cluster commands' rules that need no SLURM: which folders a cluster of several nodes
cannot use, and how --gres reads. (tests/test_cluster.py runs the real thing.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.ops.cluster.options import gpus
from pipeline.ops.cluster.shared import fs_type, unshared_warning
from pipeline.stage import StageError

MOUNTS = """/dev/vda / ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
nas:/export/home /home nfs4 rw 0 0
lustre@tcp:/scratch /scratch lustre rw 0 0
"""


def test_the_filesystem_of_a_path_is_its_nearest_mount():
    """Kills: the first matching mount taken instead of the longest (/ for everything)."""
    assert fs_type(Path("/home/u/nanomoe/.checkpoints"), MOUNTS) == "nfs4"
    assert fs_type(Path("/scratch/x"), MOUNTS) == "lustre"
    assert fs_type(Path("/tmp/ckpt"), MOUNTS) == "tmpfs"
    assert fs_type(Path("/homework"), MOUNTS) == "ext4"  # not under /home


def test_local_checkpoints_on_several_nodes_get_a_warning_and_shared_ones_none():
    """Kills: the warning given on one node too, or never."""
    said = unshared_warning("--checkpoints", Path("/tmp/ckpt"), nodes=4, mounts=MOUNTS)
    assert said.startswith("warning: --checkpoints /tmp/ckpt is on a local filesystem (tmpfs)")
    assert unshared_warning("--checkpoints", Path("/home/u/c"), nodes=4, mounts=MOUNTS) is None
    assert unshared_warning("--checkpoints", Path("/tmp/ckpt"), nodes=1, mounts=MOUNTS) is None


@pytest.mark.parametrize(
    ("gres", "n"), [(None, 0), ("gpu", 1), ("gpu:2", 2), ("gpu:a100:4", 4), ("mps:100", 0)]
)
def test_the_gpus_of_a_gres(gres, n):
    """Kills: gpu:type:N read as the type; N > 1 is what sets NANOMOE_NPROC for each cell."""
    assert gpus(gres) == n


def test_a_gpu_count_that_is_no_number_is_refused():
    with pytest.raises(StageError, match="--gres gpu:x: the GPU count is not a number"):
        gpus("gpu:x")


LOG = """
=== dvc checkout data/char/prepared data/char/fgrams.json (node1, Mon Dec  7 14:49:28 2026)
ERROR: Checkout failed for following targets:
data/char/fgrams.json
Is your cache up to date?
<https://error.dvc.org/missing-files>
"""


def test_a_failed_cell_is_named_by_the_line_that_says_why(tmp_path):
    """DVC names the missing file on the line after its ERROR; the stage's own ``error:``
    line wins over DVC's ``failed to reproduce``; a log of several tries speaks of its last.
    Kills: the first ERROR line alone (no file named); the last line taken; the whole log
    searched (the first try's reason shown after a resubmit)."""
    from pipeline.ops.cluster.task import why_failed

    log = tmp_path / "cell.log"
    log.write_text(LOG)
    assert why_failed(log) == (
        "ERROR: Checkout failed for following targets: data/char/fgrams.json "
        "Is your cache up to date?"
    )
    stage = "error: params.yaml: train.max_iters: must be > 0; set a positive number"
    log.write_text(LOG + f"\n=== dvc repro x (node2, now)\n{stage}\nERROR: failed to reproduce x\n")
    assert why_failed(log) == stage
