"""Data parallelism through torchrun: 2 CPU processes over gloo train one MoE+F-gram cell
exactly as one process does at the same global batch, write the same files and checkpoint,
log one MLflow run, and a checkpoint written by 2 ranks resumes on 1. A process count that
does not divide the batch is refused in one line, before anything is written. What each rank
feeds its model is checked apart (tests/_ddp_ranks.py): the losses alone cannot tell a rank
that trains on its slice from one that trains on the whole batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from _ddp_ranks import model_inputs
from _project import REPO, TINY, env_for, make_project, run_module

from pipeline.stage import ParamsError
from pipeline.train.launch import nproc_setting

CHAR = ("--tokenizer", "char")
CELL = ("--rope", "true", "--moe", "true", "--fgram", "true", *CHAR, "--seed", "1337")
RUN_DIR = "experiments/ablation/rope-true_moe-true_fgram-true_tokenizer-char_seed-1337"
STEPS = 20
# Every step is an eval, so curve.csv is the loss curve step by step.
TRAIN = {"batch_size": 4, "max_iters": STEPS, "eval_interval": 1, "eval_iters": 2}
TOLERANCE = 1e-5  # fp32, summation order differs: the measured gap is ~1e-7
DATA_STAGES = ("pipeline.tokenizer", "pipeline.prepare", "pipeline.mine_fgrams")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny project with its data prepared and F-grams mined, to copy for each test."""
    root = tmp_path_factory.mktemp("prepared")
    model = {**TINY["model"], "dropout": 0.0}
    make_project(root, overrides={"train": TRAIN, "model": model, "data": {"val_fraction": 0.5}})
    for stage, *args in (["pipeline.download"], *([s, *CHAR] for s in DATA_STAGES)):
        done = run_module(root, stage, *args)
        assert done.returncode == 0, done.stderr[-2000:]
    # the full split spans 3 batches of 64 windows of 16 (val_fraction 0.5): both ranks
    # take some, so their sums must be added up
    meta = json.loads((root / "data/char/prepared/meta.json").read_text(encoding="utf-8"))
    assert meta["n_val"] - 1 > 2 * 64 * TINY["model"]["block_size"]
    return root


def project(prepared, where):
    return Path(shutil.copytree(prepared, where / "project"))


def train(
    root,
    nproc: int = 1,
    fault: str | None = None,
    env_nproc: int | None = None,
    process_log: Path | None = None,
):
    """Train the cell in ``root``: on ``nproc`` torchrun ranks, or through NANOMOE_NPROC's
    relaunch (``env_nproc``); ``process_log``: every Python process it runs is recorded
    there (tests/_processes/sitecustomize.py)."""
    env = env_for(root)
    env["OMP_NUM_THREADS"] = "1"
    if process_log:
        env["PYTHONPATH"] = f"{REPO / 'tests' / '_processes'}{os.pathsep}{env['PYTHONPATH']}"
        env["PROCESS_LOG"] = str(process_log)
    if fault:
        env["NANOMOE_FAULT"] = fault
    if env_nproc:
        env["NANOMOE_NPROC"] = str(env_nproc)
    cmd = [sys.executable, "-m"]
    if nproc > 1:
        cmd += ["torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m"]
    cmd += ["pipeline.train", *CELL]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def curve(root) -> list[list[float]]:
    lines = (root / RUN_DIR / "curve.csv").read_text().splitlines()[1:]
    return [[float(v) for v in line.split(",")] for line in lines]


def max_gap(a: list[list[float]], b: list[list[float]]) -> float:
    assert len(a) == len(b) == STEPS + 1 and [r[0] for r in a] == [r[0] for r in b]
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def runs(root) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-ablation")
    return client.search_runs([exp.experiment_id])


@pytest.fixture(scope="module")
def single(prepared, tmp_path_factory):
    """The reference: the cell trained by one process."""
    root = project(prepared, tmp_path_factory.mktemp("one"))
    done = train(root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_two_gloo_ranks_give_the_one_process_curve_files_and_one_run(single, prepared, tmp_path):
    """Kills, among others: the bytes of evaluate.full_split_loss left out of its global_sum
    (the nats of both ranks over one rank's bytes: a final val bpb ~1.5x too high)."""
    root = project(prepared, tmp_path)
    done = train(root, nproc=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_gap(curve(root), curve(single)) <= TOLERANCE
    one = json.loads((single / RUN_DIR / "metrics.json").read_text())
    two = json.loads((root / RUN_DIR / "metrics.json").read_text())
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], abs=TOLERANCE)
    # bits per byte: each rank's nats and bytes summed over both before the division
    assert two["final_val_bpb"] == pytest.approx(one["final_val_bpb"], abs=TOLERANCE)
    assert two["bytes_seen"] == one["bytes_seen"]
    assert two["tokens"] == one["tokens"] == STEPS * 4 * 16  # the global batch, every step
    assert two["lb_loss"] == pytest.approx(one["lb_loss"], abs=TOLERANCE)
    assert two["z_loss"] == pytest.approx(one["z_loss"], abs=TOLERANCE)
    assert two["expert_load"] == one["expert_load"]  # counts over the global batch
    ckpt1 = torch.load(single / RUN_DIR / "ckpt.pt", weights_only=True)
    ckpt2 = torch.load(root / RUN_DIR / "ckpt.pt", weights_only=True)
    assert ckpt2.keys() == ckpt1.keys()
    assert {k: v.shape for k, v in ckpt2["model"].items()} == {
        k: v.shape for k, v in ckpt1["model"].items()
    }
    (run,) = runs(root)
    assert run.info.status == "FINISHED"
    assert sorted(p.name for p in (root / RUN_DIR).iterdir()) == sorted(
        p.name for p in (single / RUN_DIR).iterdir()
    )


def test_a_checkpoint_of_two_ranks_resumes_on_one_and_a_bad_count_is_refused(
    single, prepared, tmp_path
):
    """Kills: launch_cell's relaunch under torchrun skipped (`if False and ...`), where one
    process would train and write the same checkpoint."""
    root = project(prepared, tmp_path)
    log = tmp_path / "processes.jsonl"
    killed = train(root, env_nproc=2, fault="kill-after-checkpoint@10", process_log=log)
    assert killed.returncode != 0  # NANOMOE_NPROC=2: DVC's route, torchrun on 2 ranks
    stage, *others = [json.loads(line) for line in log.read_text().splitlines()]
    ranks = [r for r in others if r["world_size"] is not None]
    assert stage["world_size"] is None  # the process DVC starts relaunches itself
    assert sorted((r["rank"], r["world_size"]) for r in ranks) == [("0", "2"), ("1", "2")]
    assert len({r["pid"] for r in ranks} - {stage["pid"]}) == 2  # two processes of their own
    (ckpt,) = (root / ".checkpoints").glob("*.pt")
    before = ckpt.read_bytes()
    assert torch.load(ckpt, weights_only=True)["step"] == 10

    refused = train(root, env_nproc=3)  # batch 4 does not split over 3
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: params.yaml: train.batch_size: 4 does not split over 3 processes; "
        "run a process count that divides it (1, 2, 4)"
    ]
    assert ckpt.read_bytes() == before

    done = train(root)  # one process takes over
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from step 10" in done.stdout
    assert max_gap(curve(root), curve(single)) <= TOLERANCE
    (run,) = runs(root)  # the same run went on
    assert run.info.status == "FINISHED"


@pytest.fixture(scope="module")
def rank_inputs(tmp_path_factory) -> tuple[dict, list[dict]]:
    """(one process's forward inputs, [rank 0's, rank 1's] under torchrun on 2 processes)."""
    out = tmp_path_factory.mktemp("ranks")
    env = {**env_for(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "_ddp_ranks.py"), str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return model_inputs(), ranks


def assert_same(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert [t.shape for t in got] == [t.shape for t in want]
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


def test_each_rank_trains_on_its_own_half_of_the_global_batch(rank_inputs):
    """Kills: `x, y = x[self.rows], y[self.rows]` removed from Trainer.train_step (every rank
    then trains the whole batch, with the same losses and gradients)."""
    one, (rank0, rank1) = rank_inputs
    (batch,) = one["train"]
    assert batch.shape[0] == 4
    assert_same(rank0["train"], [batch[:2]])
    assert_same(rank1["train"], [batch[2:]])


def test_each_rank_evaluates_its_own_half_of_every_eval_batch(rank_inputs):
    """Kills: `x[rows]`, `y[rows]` dropped to `x`, `y` in evaluate.batches_loss."""
    one, (rank0, rank1) = rank_inputs
    assert len(one["eval"]) == 4  # eval_iters batches of train, then of val
    assert_same(rank0["eval"], [b[:2] for b in one["eval"]])
    assert_same(rank1["eval"], [b[2:] for b in one["eval"]])


def test_ranks_take_the_full_split_batches_in_turns(rank_inputs):
    """Kills: the `i % world != rank` skip removed from evaluate.full_split_loss."""
    one, (rank0, rank1) = rank_inputs
    assert len(one["full"]) == 3
    assert_same(rank0["full"], one["full"][0::2])
    assert_same(rank1["full"], one["full"][1::2])


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_nproc_must_be_a_positive_integer(monkeypatch, value):
    monkeypatch.setenv("NANOMOE_NPROC", value)
    with pytest.raises(ParamsError, match=r"^NANOMOE_NPROC: must be a positive integer"):
        nproc_setting()
    monkeypatch.setenv("NANOMOE_NPROC", "2")
    assert nproc_setting() == 2
