"""The one-command GPU check: one line and exit 2 without CUDA; on a device it can use (the
CPU here, tiny model, compile through aot_eager) it fills every figure of its JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from nanomoe import switches
from pipeline.bench import gpu_check

# Every cell of a grid that gives each model switch both levels, on one token stream (the
# char tokenizer's): the ablation's 8 model variants.
ALL_VARIANTS = {
    switches.variant_name(c)
    for c in switches.cells({s.name: s.levels if s.model else [s.low] for s in switches.SWITCHES})
}


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a GPU is visible: the no-CUDA refusal cannot happen here"
)
def test_without_cuda_it_fails_in_one_line_naming_cuda(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.bench.gpu_check", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: CUDA: no GPU visible to torch (torch.cuda.is_available() is False); run "
        "make gpu-check on a machine with an NVIDIA GPU and a CUDA build of torch"
    ]
    assert not out.exists()


def test_the_check_writes_bench_and_all_8_variants(monkeypatch, tmp_path):
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: real_compile(m, backend="aot_eager"))
    monkeypatch.chdir(tmp_path)  # no data/char/prepared here: synthetic tokens
    out = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--tiny", "--train-steps", "4", "--bench-steps", "2"]
    assert gpu_check.main([*argv, "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["machine"]["data"].startswith("synthetic")
    bench = figures["bench"]
    assert [(r["variant"], r["compile"]) for r in bench] == [
        ("abspos-moe-fgram-bpe", False), ("abspos-moe-fgram-bpe", True),
        ("rope+moe+fgram-bpe", False), ("rope+moe+fgram-bpe", True),
    ]  # fmt: skip
    assert all(r["ms_per_step"] > 0 and 0 < r["mfu"] < 10 for r in bench)
    cells = figures["train"]
    assert len(cells) == len(ALL_VARIANTS) == 8 and {c["variant"] for c in cells} == ALL_VARIANTS
    assert all(c["steps"] == 4 and math.isfinite(c["final_val_loss"]) for c in cells)
    assert figures["config"]["n_layer"] == gpu_check.TINY_MODEL["n_layer"]


def test_the_check_imports_neither_mlflow_nor_dvc_nor_optuna():
    code = (
        "import sys, pipeline.bench.gpu_check; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'dvc', 'optuna'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_check_trains_at_nanogpt_gpu_config():
    assert gpu_check.GPU_MODEL == pytest.approx(
        dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0)
    )
