"""DVC's run cache for the train stages, on real DVC: cells restored instead of retrained,
several workers sharing one cache, bytecode that cannot break ``dvc status``.

One tiny project, moe off and on (2 cells: one a worker), committed to git and trained by
``python -m pipeline.workers -j 2``: two worktrees on its cache, then ``dvc repro`` here.
Every process writes bytecode, as on a user's machine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _project import env_for, run_module, tail
from _runcache import TRAINED, _ok, cell_runs, committed_project, run_ids, summary_run


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = committed_project(tmp_path_factory.mktemp("runcache") / "project")
    t0 = time.monotonic()
    trained = run_module(root, "pipeline.workers", "-j", "2", "--threads", "1")
    print(f"pipeline.workers -j 2: {time.monotonic() - t0:.0f} s")
    return root, trained


def test_two_workers_train_every_cell_and_repro_here_restores_them(project):
    """Kills: workers.py's final dvc repro training again (the worktrees' cache not this
    clone's), or a worker's runs going to its worktree's store."""
    root, trained = project
    _ok(trained)
    done = re.findall(r"\[\d/2\] (\S+):", trained.stdout)
    assert len(done) == 2, tail(trained)
    restored = re.findall(r"Stage '(train[^']*)' is cached - skipping run", trained.stdout)
    assert sorted(restored) == sorted(done), tail(trained)
    assert TRAINED not in trained.stdout  # the workers' own output goes to their logs
    assert (root / "experiments" / "report.md").is_file()
    metrics = [
        json.loads(p.read_text()) for p in (root / "experiments/ablation").glob("*/metrics.json")
    ]
    assert sorted(cell_runs(root).values()) == sorted(
        f"{m['variant']} s{m['seed']}" for m in metrics
    )
    assert set(run_ids(root).values()) == set(cell_runs(root))


@pytest.mark.parametrize("bytecode", [True, False], ids=["bytecode", "no-bytecode"])
def test_bytecode_written_or_not_leaves_dvc_status_clean(project, tmp_path, bytecode):
    """The project as a fresh clone has it (no __pycache__/: the repro wrote them, git leaves
    them out), then the suite's imports, with PYTHONDONTWRITEBYTECODE unset (bytecode
    written) and set: ``dvc status`` is clean before and after, and ``dvc repro`` trains
    nothing. Kills: ``__pycache__/`` and ``*.pyc`` taken out of .dvcignore (the lock then
    holds the bytecode in nanomoe/'s hash, and every train stage reads ``modified``)."""
    root = tmp_path / "clone"
    shutil.copytree(project[0], root, symlinks=True)
    for cache in [*root.glob("nanomoe/**/__pycache__"), *root.glob("pipeline/**/__pycache__")]:
        shutil.rmtree(cache)
    env = env_for(root, bytecode=bytecode)
    status = _ok(run_module(root, "dvc", "status", env=env))
    assert "Data and pipelines are up to date" in status.stdout, tail(status)
    imports = "import nanomoe.model, nanomoe.trainer, pipeline.train, pipeline.report, conftest"
    env["PYTHONPATH"] += f":{Path(__file__).parent}"
    subprocess.run([sys.executable, "-c", imports], cwd=root, env=env, check=True)
    assert any((root / "nanomoe" / "__pycache__").glob("*.pyc")) == bytecode
    status = _ok(run_module(root, "dvc", "status", env=env))
    assert "Data and pipelines are up to date" in status.stdout, tail(status)
    again = _ok(run_module(root, "dvc", "repro", env=env))
    assert "Running stage" not in again.stdout, tail(again)


def test_a_params_toggle_and_back_restores_the_cells_and_opens_no_run(project, tmp_path):
    """``moe.top_k`` 1 -> 2 trains the MoE cell; back to 1 restores it from the run
    cache: no stage trains, no MLflow run opens, run.json names the first runs and the
    summary run names those. Kills: ``cache: false`` back on sample.txt (grid.py), which
    turns DVC's run cache off: the way back trains the cell again."""
    root = tmp_path / "toggle"
    shutil.copytree(project[0], root, symlinks=True)
    before_ids, before_runs = run_ids(root), cell_runs(root)
    path = root / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["moe"]["top_k"] = 2
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    there = _ok(run_module(root, "dvc", "repro"))
    assert there.stdout.count(TRAINED) == 1, tail(there)
    assert len(cell_runs(root)) == len(before_runs) + 1
    path.write_text(original)
    t0 = time.monotonic()
    back = _ok(run_module(root, "dvc", "repro"))
    print(f"toggle back: {time.monotonic() - t0:.1f} s")
    assert TRAINED not in back.stdout, tail(back)
    restored = re.findall(r"Stage '(train[^']*)' is cached - skipping run", back.stdout)
    assert restored == ["train_moe@true-true-false-char-1337"]
    assert len(cell_runs(root)) == len(before_runs) + 1  # no new run for a restored cell
    assert run_ids(root) == before_ids
    named = set(summary_run(root).data.tags["cell_run_ids"].split(","))
    assert named == set(before_ids.values())
    assert "Data and pipelines are up to date" in _ok(run_module(root, "dvc", "status")).stdout


def test_a_changed_code_file_or_fgram_table_still_retrains_the_cells_that_use_it(project, tmp_path):
    """The run cache hides no change. A comment added to nanomoe/model.py makes every cell
    stale, and one trains rather than restores; with F-grams in the grid, a new F-gram table
    (fgram.max_fgrams) retrains the F-gram cells only. Kills: a code dep left out of the
    stage (pipeline/ops/code_deps.py's closure), or data/{tokenizer}/fgrams.json left out of
    the F-gram cells' deps (switches.py's fgram data)."""
    root = tmp_path / "changed"
    shutil.copytree(project[0], root, symlinks=True)
    with open(root / "nanomoe" / "model.py", "a", encoding="utf-8") as f:
        f.write("# a change the run cache must not hide\n")
    status = _ok(run_module(root, "dvc", "status"))
    assert len(re.findall(r"modified:\s+nanomoe\n", status.stdout)) == 2, tail(status)
    code = _ok(
        run_module(root, "dvc", "repro", "--single-item", "train@true-false-false-char-1337")
    )
    assert code.stdout.count(TRAINED) == 1, tail(code)  # not restored: no record of this code

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["grid"] = {"rope": [True], "moe": [False], "fgram": [False, True]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _ok(run_module(root, "pipeline.grid"))
    first = _ok(run_module(root, "dvc", "repro"))
    fgram_cells = re.findall(r"Running stage '(train_fgram@[^']*)'", first.stdout)
    assert len(fgram_cells) == 1, tail(first)
    params["fgram"]["max_fgrams"] = 16
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    table = _ok(run_module(root, "dvc", "repro"))
    ran = re.findall(r"Running stage '(train[^']*)'", table.stdout)
    assert ran == ["train_fgram@true-false-true-char-1337"], tail(table)  # not the F-gram-off cell


def test_a_tracking_server_that_does_not_answer_fails_the_stages_in_seconds(project):
    """Kills: check_store() taken out of train.py or report.py (MLflow's HTTP retries took
    about 5 minutes to give up on this address)."""
    root, _ = project
    env = {**env_for(root), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    for args in (
        (
            "pipeline.train",
            "--rope",
            "true",
            "--moe",
            "false",
            "--fgram",
            "false",
            "--tokenizer",
            "char",
            "--seed",
            "1337",
        ),
        ("pipeline.report",),
    ):
        t0 = time.monotonic()
        out = run_module(root, *args, env=env)
        took = time.monotonic() - t0
        assert out.returncode == 2, tail(out)
        assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
        assert out.stderr.startswith("error: MLFLOW_TRACKING_URI: http://127.0.0.1:9 does not")
        assert took < 30, f"{args[0]} took {took:.0f} s"


def test_the_report_flags_mixed_runtimes_and_lists_runs_its_store_lacks(project, tmp_path):
    """One cell's metrics.json says it trained on a GPU, and the store is a new one: the
    report warns, summary.json says so, and every cell's run is listed as unresolved.
    Kills: mixed() in provenance.py that checks no key, or unresolved() that finds every run."""
    root = tmp_path / "mixed"
    shutil.copytree(project[0], root, symlinks=True)
    (metrics,) = (root / "experiments/ablation").glob("rope-true_moe-true*/metrics.json")
    m = json.loads(metrics.read_text())
    m["device"] = "NVIDIA H200"
    metrics.write_text(json.dumps(m))
    env = {**env_for(root), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other.db'}"}
    out = _ok(run_module(root, "pipeline.report", env=env))
    summary = json.loads((root / "experiments/summary.json").read_text())
    assert summary["mixed_runtime"] is True
    assert set(summary["runtime"]["device"]) == {"cpu", "NVIDIA H200"}
    assert sorted(summary["unresolved_runs"]) == sorted(run_ids(root).values())
    report = (root / "experiments/report.md").read_text()
    assert "device: cpu (1), NVIDIA H200 (1)" in report
    assert "MLflow: 0 of 2 cells' runs found" in report and "Unresolved" in report
    assert "cells trained under different runtimes: device" in out.stdout
    for path in (root / "experiments/ablation").glob("*/metrics.json"):
        assert set(json.loads(path.read_text())) >= {"device", "dtype", "torch_version", "nproc"}
