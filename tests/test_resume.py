"""A train cell killed at any point resumes under `dvc repro`, bit for bit, in the same run.

The kills are real SIGKILLs of the stage process, placed at an exact step by the trainer's
fault-injection hook (NANOMOE_FAULT): tiny cells train too fast for a timed kill to land.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from unittest.mock import ANY

import mlflow
import numpy as np
import pytest
import torch
import yaml
from _project import env_for, make_project, run_module

from nanomoe.config import GPTConfig, TrainConfig
from pipeline.layout import Layout
from pipeline.project import Project
from pipeline.train.cell import prepare_cell
from pipeline.train.resume import ResumePoint, fingerprint

CELL = "train@false-false-false-char-1337"  # dense, abspos; tiny params: 12 steps, eval every 6
RUN_DIR = "experiments/ablation/rope-false_moe-false_fgram-false_tokenizer-char_seed-1337"
CHAR = ["--tokenizer", "char"]  # the char tokenizer's data stages, and a char cell
TIMING = ("tokens_per_sec", "wall_s")


def dvc(root, *args, fault: str | None = None) -> subprocess.CompletedProcess:
    env = env_for(root)
    if fault:
        env["NANOMOE_FAULT"] = fault
    return run_module(root, "dvc", *args, env=env)


def outputs(root) -> tuple[dict, str]:
    """metrics.json without its timing fields, and curve.csv."""
    metrics = json.loads((root / RUN_DIR / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING}, (
        root / RUN_DIR / "curve.csv"
    ).read_text()


def runs(root) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-ablation")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def val_loss_steps(root, run_id: str) -> list[int]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return sorted(m.step for m in client.get_metric_history(run_id, "val_loss"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose dense cell trained once, uninterrupted: the reference outputs."""
    root = make_project(tmp_path_factory.mktemp("resume"))
    assert run_module(root, "dvc", "init", "--no-scm", "-q").returncode == 0
    done = dvc(root, "repro", CELL)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, outputs(root)


@contextlib.contextmanager
def edited_params(root, **train) -> Iterator[None]:
    """params.yaml with ``train`` set in its train: section, restored afterwards: the module's
    project is shared by its tests."""
    path = root / "params.yaml"
    before = path.read_text()
    params = yaml.safe_load(before)
    params["train"].update(train)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(before)


def kill_then_repro(root, fault: str) -> subprocess.CompletedProcess:
    killed = dvc(root, "repro", "--force", "--single-item", CELL, fault=fault)
    assert killed.returncode != 0 and not (root / RUN_DIR / "metrics.json").exists()
    assert list((root / ".checkpoints").glob("*.pt")), "no checkpoint survived the kill"
    return killed


@pytest.mark.parametrize("fault", ["kill@9", "kill-after-checkpoint@6"])
def test_a_killed_cell_resumes_from_its_checkpoint_with_identical_results(project, fault):
    root, reference = project
    kill_then_repro(root, fault)
    # --force: dvc.lock still names the module's reference run of this very cell, whose files
    # DVC's cache holds, so plain `dvc repro` would restore them (a cell killed before it
    # ever finished has no such record and resumes on a plain `dvc repro`)
    again = dvc(root, "repro", "--force", "--single-item", CELL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"resuming from step 6\b", again.stdout), again.stdout
    assert outputs(root) == reference
    assert not list((root / ".checkpoints").iterdir())  # a completed cell leaves none
    last = runs(root)[-1]
    assert all(r.info.status != "RUNNING" for r in runs(root))
    assert last.info.status == "FINISHED"
    assert val_loss_steps(root, last.info.run_id) == [0, 6, 12]  # none lost, none twice


def wait_for(path, text: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the file at ``path`` holds ``text``; fails if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert proc.poll() is None, f"exited {proc.returncode}: {path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in {timeout:.0f} s"
        time.sleep(0.05)


def test_sigterm_mid_interval_saves_that_step_and_the_rerun_resumes_it_bit_for_bit(project):
    """SIGTERM (a scheduler preempting the job) at step 9, between the evals at 6 and 12: the
    cell saves a checkpoint at step 9, says so, exits 143; run again, it resumes from step 9
    and writes what the uninterrupted run wrote. Kills: the trainer's stop check taken out
    (SIGTERM unwinds, 130, resume from 6); the checkpoint not saved at the stop (resume from
    6); the stop checked before the step's optimizer update (saved at 8, so 8 != 9)."""
    root, reference = project
    log = root / "sigterm.log"
    cmd = ["pipeline.train", "--rope", "false", "--moe", "false", "--fgram", "false"]
    env = {**env_for(root), "NANOMOE_FAULT": "pause@9"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *cmd, *CHAR, "--seed", "1337"],
            cwd=root, env=env, stdout=out, stderr=out,
        )  # fmt: skip
        try:
            wait_for(log, "fault: paused after step 9", proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 143, log.read_text()[-3000:]
        finally:
            proc.kill()
    assert re.search(
        r"preempted: \S+ seed 1337 saved at step 9 of 12 to \.checkpoints/", log.read_text()
    )
    (ckpt,) = (root / ".checkpoints").glob("*.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == 9
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 9
    assert runs(root)[-1].info.status == "KILLED"

    again = dvc(root, "repro", "--force", "--single-item", CELL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"resuming from step 9\b", again.stdout), again.stdout
    assert outputs(root) == reference
    last = runs(root)[-1]
    assert last.info.status == "FINISHED"
    assert val_loss_steps(root, last.info.run_id) == [0, 6, 12]


def test_a_checkpoint_of_other_settings_is_discarded_and_its_run_killed(project):
    root, reference = project
    kill_then_repro(root, "kill@9")
    killed_run = runs(root)[-1]
    with edited_params(root, learning_rate=0.002):
        again = dvc(root, "repro", CELL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "discarded, its train differ" in again.stdout and "resuming" not in again.stdout
    after = {r.info.run_id: r for r in runs(root)}
    assert after[killed_run.info.run_id].info.status == "KILLED"
    fresh = runs(root)[-1]
    assert fresh.info.status == "FINISHED" and fresh.info.run_id != killed_run.info.run_id
    assert val_loss_steps(root, fresh.info.run_id) == [0, 6, 12]
    assert outputs(root)[0]["steps"] == 12 and outputs(root) != reference


def test_resume_check_names_what_differs_and_refuses_an_unreadable_file(tmp_path):
    point = ResumePoint(tmp_path / "c.pt", tmp_path / "c.json")
    data = tmp_path / "train.bin"
    data.write_bytes(b"\0" * 8)
    fp = fingerprint(GPTConfig(), TrainConfig(), [data])
    assert point.check(fp) == (None, None)  # nothing to resume
    point.checkpoint.write_bytes(b"not a checkpoint")
    resumed, why = point.check(fp)
    assert resumed is None and why.startswith("unreadable")
    # what only changes how the cell runs is left out; the data's bytes are not
    assert fingerprint(GPTConfig(), TrainConfig(progress=False, device="cpu"), [data]) == fp
    data.write_bytes(b"\1" * 8)
    assert fingerprint(GPTConfig(), TrainConfig(), [data])["inputs"] != fp["inputs"]


def test_a_store_lost_mid_run_keeps_the_files_and_the_rerun_completes_without_training(
    tmp_path, monkeypatch
):
    from nanomoe.trainer import Trainer
    from pipeline import tracking
    from pipeline.data import download, prepare, tokenizer
    from pipeline.stage import StageError
    from pipeline.train import cli as train

    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "NANOMOE_FAULT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NANOMOE_DATA_URL", str(root / "corpus.txt"))
    assert download.main([]) == 0
    assert tokenizer.main(CHAR) == 0 and prepare.main(CHAR) == 0
    args = ["--rope", "false", "--moe", "true", "--fgram", "false", *CHAR, "--seed", "1337"]
    real_log = tracking.Run.log_metrics
    logged = []

    def store_gone_after_first_eval(self, metrics, step):
        if logged:
            raise mlflow.exceptions.MlflowException("unable to open database file")
        logged.append(step)
        return real_log(self, metrics, step)

    monkeypatch.setattr(tracking.Run, "log_metrics", store_gone_after_first_eval)
    with pytest.raises(StageError, match=r"mlflow\.db: the MLflow store failed .* without"):
        train.main(args)
    run_dir = root / "experiments/ablation/rope-false_moe-true_fgram-false_tokenizer-char_seed-1337"
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["steps"] == 12  # training went on to the end and wrote its files
    assert [r.info.status for r in runs(root)] == ["FAILED"]

    monkeypatch.setattr(tracking.Run, "log_metrics", real_log)
    monkeypatch.setattr(Trainer, "train_step", lambda *a: pytest.fail("the cell retrained"))
    assert train.main(args) == 0
    (run,) = runs(root)
    assert run.info.status == "FINISHED" and run.data.metrics["final_val_loss"] > 0
    assert val_loss_steps(root, run.info.run_id) == [0, 6, 12]
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again == written | {"wall_s": ANY, "tokens_per_sec": ANY}  # MoE stats included


# --- the fingerprint: what a checkpoint must share with the cell that resumes it --------------


def saved_checkpoint(point: ResumePoint, fp: dict) -> ResumePoint:
    """A checkpoint at ``point`` that a cell of fingerprint ``fp`` wrote (the rest of a
    checkpoint plays no part in the check)."""
    point.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fingerprint": fp, "step": 6}, point.checkpoint)
    return point


@pytest.mark.parametrize(
    "change",
    [{"compile": True}, {"checkpoint_interval": 3}, {"device": "cpu"}, {"progress": False}],
    ids=lambda change: next(iter(change)),
)
def test_how_a_cell_executes_never_invalidates_its_checkpoint(tmp_path, change):
    """compile, checkpoint_interval, device and progress leave the math as it is: a checkpoint
    written without them resumes with them. Kills: compile (or any of them) taken out of
    resume.EXECUTION, so that it enters the fingerprint."""
    data = tmp_path / "train.bin"
    data.write_bytes(b"\0" * 8)
    point = ResumePoint(tmp_path / "c.pt", tmp_path / "c.json")
    saved_checkpoint(point, fingerprint(GPTConfig(), TrainConfig(), [data]))
    resumed, why = point.check(fingerprint(GPTConfig(), TrainConfig(**change), [data]))
    assert why is None and resumed["step"] == 6


@pytest.mark.parametrize(
    "change",
    [{"dtype": "bf16"}, {"seed": 7}, {"batch_size": 8}, {"learning_rate": 2e-3}],
    ids=lambda change: next(iter(change)),
)
def test_a_train_setting_that_changes_the_math_invalidates_a_checkpoint(tmp_path, change):
    """Kills: dtype (or seed, batch_size, learning_rate) added to resume.EXECUTION."""
    data = tmp_path / "train.bin"
    data.write_bytes(b"\0" * 8)
    point = ResumePoint(tmp_path / "c.pt", tmp_path / "c.json")
    saved_checkpoint(point, fingerprint(GPTConfig(), TrainConfig(), [data]))
    assert point.check(fingerprint(GPTConfig(), TrainConfig(**change), [data])) == (
        None,
        "its train differ from this cell's",
    )


CODE_EDIT = """
from pathlib import Path
import nanomoe, torch
from nanomoe.config import GPTConfig, TrainConfig
from pipeline.train.resume import ResumePoint, fingerprint

assert Path(nanomoe.__file__).resolve().is_relative_to(Path.cwd().resolve())  # the copy
point = ResumePoint(Path("c.pt"), Path("c.json"))
def fp():
    return fingerprint(GPTConfig(), TrainConfig(), [Path("corpus.txt")])
torch.save({"fingerprint": fp()}, point.checkpoint)
print(point.check(fp())[1])
with open("nanomoe/moe.py", "a") as f:
    f.write("\\n# a one-line edit to the model library\\n")
print(point.check(fp())[1])
"""


def test_an_edit_to_the_model_library_invalidates_a_checkpoint(tmp_path):
    """In a copy of the project, whose nanomoe/ the edit may touch. Kills: "code" dropped
    from fingerprint(); code_hash() hashing no file (its glob made "*.pyx")."""
    root = make_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", CODE_EDIT], cwd=root, env=env_for(root),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["None", "its code differ from this cell's"]


@pytest.fixture
def mined(tmp_path, monkeypatch):
    """A tiny project with its data prepared and F-grams mined (the stages in-process)."""
    from pipeline.data import download, mine_fgrams, prepare, tokenizer

    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "NANOMOE_FAULT", "NANOMOE_NPROC"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NANOMOE_DATA_URL", str(root / "corpus.txt"))
    assert download.main([]) == 0
    assert all(stage.main(CHAR) == 0 for stage in (tokenizer, prepare, mine_fgrams))
    return root


def cell_and_fingerprint(root, fgram: bool):
    """The abspos char cell without MoE, with or without F-grams, as the train stage prepares
    it, and its fingerprint (the tokenizer left out of ``levels``: its low level, char)."""
    levels = {"rope": False, "moe": False, "fgram": fgram}
    cell = prepare_cell(Project.load(root), levels, 1337)
    return cell, fingerprint(cell.config, cell.train_cfg, cell.inputs)


def test_a_new_fgram_table_invalidates_the_checkpoints_of_fgram_cells_only(mined):
    """An F-gram cell's inputs include the F-gram table; a cell without F-grams does not read
    it. Kills: the switches' data (switch_inputs) left out of prepare_cell's inputs; the
    fgram switch's data=("data/{tokenizer}/fgrams.json",) removed from the registry."""
    fgram, fgram_fp = cell_and_fingerprint(mined, fgram=True)
    dense, dense_fp = cell_and_fingerprint(mined, fgram=False)
    saved_checkpoint(fgram.resume, fgram_fp)
    saved_checkpoint(dense.resume, dense_fp)
    assert fgram.resume.check(cell_and_fingerprint(mined, fgram=True)[1])[1] is None

    table = Layout.load(mined).fgrams("char")
    doc = json.loads(table.read_text(encoding="utf-8"))
    doc["fgrams"] = doc["fgrams"][:-1]  # mined again, one F-gram fewer
    table.write_text(json.dumps(doc), encoding="utf-8")

    assert fgram.resume.check(cell_and_fingerprint(mined, fgram=True)[1]) == (
        None,
        "its inputs differ from this cell's",
    )
    resumed, why = dense.resume.check(cell_and_fingerprint(mined, fgram=False)[1])
    assert why is None and resumed is not None


def test_the_tokenizer_and_its_prepared_ids_are_inputs_of_every_cell(mined):
    """Every cell reads its tokenizer's files, whatever its other switches: a re-prepared
    split invalidates the checkpoints of F-gram cells and the others alike. Kills: the
    tokenizer switch's ``always=True`` dropped (a char cell, at the switch's low level, would
    leave data/char/ out of its inputs); a data folder fingerprinted by its name, not its
    files (switch_inputs not listing data/char/prepared/)."""
    prepared = {f"data/char/prepared/{n}" for n in ("meta.json", "train.bin", "val.bin")}
    for fgram in (False, True):
        cell, fp = cell_and_fingerprint(mined, fgram=fgram)
        inputs = {str(p.relative_to(mined)) for p in cell.inputs}
        assert {"data/char/tokenizer.json", *prepared} <= inputs
        assert ("data/char/fgrams.json" in inputs) == fgram
        saved_checkpoint(cell.resume, fp)
    val = mined / "data/char/prepared/val.bin"
    ids = np.fromfile(val, dtype=np.uint16)
    assert not np.array_equal(ids, ids[::-1])
    ids[::-1].tofile(val)  # prepared again: as many ids, other ones
    for fgram in (False, True):
        cell, fp = cell_and_fingerprint(mined, fgram=fgram)
        assert cell.resume.check(fp) == (None, "its inputs differ from this cell's")
