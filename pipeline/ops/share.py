"""Push the cells this clone trained to the team's DVC remote, whole, so that any other clone
restores them instead of training them again.

    python -m pipeline.share             # the default remote
    python -m pipeline.share -r team     # a named one

It does what ``dvc push --run-cache`` does (the run-cache records and the files the
workspace's dvc.lock names), and one thing more. A record names every file of its cell,
metrics.json, curve.csv and curve.png included: git keeps those (``cache: false``), so DVC
copies them into its cache when it saves the record, but ``dvc push`` does not send them, and
a clone that pulls the record without them cannot restore the cell: it trains it again. This
command pushes every file each local record names. Workers that share one cache folder
(``dvc cache dir``) need none of this: their records and files are already in one place.

On the other side: ``dvc pull --run-cache``, then ``dvc repro --pull``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.layout import project_root
from pipeline.stage import StageError, run_stage


def records(runs: Path) -> list[tuple[str, str]]:
    """(key, value) of every run-cache record under ``runs`` (``.dvc/cache/runs``)."""
    return [(p.parent.name, p.name) for p in sorted(runs.glob("*/*/*")) if p.is_file()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.share",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("-r", "--remote", help="the DVC remote (default: core.remote)")
    a = ap.parse_args(argv)
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(project_root())) as repo:
            pushed = repo.push(remote=a.remote, run_cache=True)
            found = records(Path(repo.stage_cache.cache_dir))
            used = repo.stage_cache.get_used_objs(found)
            objs = set().union(*used.values())
            result = repo.cloud.push(objs, remote=a.remote)
    except DvcException as err:
        raise StageError(
            f".dvc/config: dvc push failed ({str(err).splitlines()[0]}); set a remote "
            "(dvc remote add -d team <url>) or pass -r <name>"
        ) from None
    if result.failed:
        raise StageError(
            f".dvc/cache: {len(result.failed)} file(s) the run cache names could not be "
            "pushed; check the remote and run python -m pipeline.share again"
        )
    print(
        f"pushed: {pushed} file(s) and run-cache records (dvc push --run-cache), then "
        f"{len(result.transferred)} more of the {len(objs)} files named by the "
        f"{len(found)} run-cache records"
    )
    return 0


if __name__ == "__main__":
    run_stage(main)
