"""Whether a folder is on a filesystem that every node of a cluster sees.

A task requeued on another node must find the checkpoints of the task it replaces, and every
task must write the one DVC cache: on a cluster of several nodes both must live on the
shared filesystem (NFS, Lustre, GPFS, BeeGFS, CephFS, ...). From inside one node that can
only be told by the filesystem's type; a local type (ext4, xfs, tmpfs, ...) on a cluster of
more than one node gets a warning.
"""

from __future__ import annotations

import os
from pathlib import Path

NETWORK = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
    "fuse.ceph", "glusterfs", "fuse.glusterfs", "panfs", "wekafs", "fuse.sshfs", "9p",
    "fuse.juicefs", "vast", "afs", "orangefs", "pvfs2", "ocfs2", "gfs2",
}  # fmt: skip


def fs_type(path: Path, mounts: str | None = None) -> str:
    """The type of the filesystem that holds ``path`` (made or not yet), from /proc/mounts
    (or ``mounts``, that file's text): the mount point nearest it."""
    here = Path(path).resolve()
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return "unknown"
    best, kind = "", "unknown"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = str(here) == point or str(here).startswith(point.rstrip("/") + os.sep)
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def unshared_warning(what: str, path: Path, nodes: int, mounts: str | None = None) -> str | None:
    """A warning when ``path`` is on a local filesystem of a cluster of several ``nodes``."""
    kind = fs_type(path, mounts)
    if nodes <= 1 or kind in NETWORK:
        return None
    return (
        f"warning: {what} {path} is on a local filesystem ({kind}) and the cluster has "
        f"{nodes} nodes: a task on another node will not see it; put it on the shared "
        "filesystem"
    )
