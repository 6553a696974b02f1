"""The grid trained by two workers on two clones, shared through a local-folder DVC remote,
and a third clone that restores every cell: real DVC, real git."""

from __future__ import annotations

import json
import re
import time

from _project import env_for, git, run_module, tail
from _runcache import TRAINED, _ok, cell_runs, committed_project

ROPE = {"rope": [False, True], "moe": [False], "fgram": [False], "tokenizer": ["char"]}


def test_three_clones_two_workers_push_their_halves_and_the_third_trains_nothing(tmp_path):
    """Two clones each train half the cells (``pipeline.grid --targets --share I/2``) and push
    them with ``pipeline.share`` to a local-folder DVC remote, logging to one MLflow store
    (the team server's stand-in); the third clone's ``dvc repro --pull`` trains nothing, writes
    the report, and holds every worker's metrics.json byte for byte. Kills: pipeline.share
    reduced to ``dvc push --run-cache``, which leaves the metrics and plots the records name
    behind: the third clone then trains every cell again."""
    # rope only: 2 cells, one a worker (two would prove no more)
    origin = committed_project(tmp_path / "origin", {"grid": ROPE})
    remote = tmp_path / "remote"
    _ok(run_module(origin, "dvc", "remote", "add", "-d", "team", str(remote)))
    git(origin, "commit", "-q", "-am", "the team's remote")
    store = f"sqlite:///{tmp_path / 'team.db'}"
    written: dict[str, bytes] = {}
    for i in range(2):
        worker = tmp_path / f"worker{i}"
        git(tmp_path, "clone", "-q", str(origin), str(worker))
        env = {**env_for(worker), "MLFLOW_TRACKING_URI": store}
        listed = _ok(run_module(worker, "pipeline.grid", "--targets", "--share", f"{i}/2"))
        targets = listed.stdout.split()
        assert len(targets) == 1
        trained = _ok(run_module(worker, "dvc", "repro", *targets, env=env))
        assert trained.stdout.count(TRAINED) == 1, tail(trained)
        _ok(run_module(worker, "pipeline.share", env=env))
        for path in (worker / "experiments/ablation").glob("*/metrics.json"):
            written[path.parent.name] = path.read_bytes()
    assert len(written) == 2

    third = tmp_path / "third"
    git(tmp_path, "clone", "-q", str(origin), str(third))
    env = {**env_for(third), "MLFLOW_TRACKING_URI": store}
    t0 = time.monotonic()
    again = _ok(run_module(third, "dvc", "repro", "--pull", env=env))
    took = time.monotonic() - t0
    print(f"third clone: dvc repro --pull {took:.1f} s")
    assert TRAINED not in again.stdout, tail(again)
    restored = re.findall(r"Stage '(train[^']*)' is cached - skipping run", again.stdout)
    assert len(restored) == 2, tail(again)
    assert "Running stage 'report'" in again.stdout
    mine = {
        p.parent.name: p.read_bytes()
        for p in (third / "experiments/ablation").glob("*/metrics.json")
    }
    assert mine == written
    summary = json.loads((third / "experiments/summary.json").read_text())
    assert summary["unresolved_runs"] == []
    assert len(cell_runs(third, store)) == 2
