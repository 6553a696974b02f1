"""Cells without training them, for the tests that add a switch (``bias``, the README's
recipe) to a throwaway project: its registry line, a grid written with ``pipeline.grid``, and
a finished cell's files as the train stage writes them."""

from __future__ import annotations

import json

import yaml
from _project import run_module

NEW_SWITCH = '    Switch("bias", labels=("-bias", "+bias")),\n'


def set_grid(root, grid: dict) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["grid"] = grid
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    out = run_module(root, "pipeline.grid")
    assert out.returncode == 0, out.stderr


def label(name: str, level) -> str:
    if name == "rope":
        return "rope" if level else "abspos"
    if name == "tokenizer":
        return "+bpe" if level == "bpe" else "-bpe"
    return f"{'+' if level else '-'}{name}"


def write_cell(root, levels: dict, seed: int, loss: float) -> None:
    """A finished cell's files, as the train stage writes them, without training it."""
    name = "_".join(f"{k}-{str(v).lower()}" for k, v in levels.items()) + f"_seed-{seed}"
    folder = root / "experiments" / "ablation" / name
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {
        "variant": "".join(label(k, v) for k, v in levels.items()), **levels, "seed": seed,
        "final_val_bpb": loss, "best_val_bpb": loss, "final_val_loss": loss,
        "best_val_loss": loss, "best_step": 12, "train_loss": loss, "tokens_per_sec": 1.0,
        "wall_s": 1.0, "steps": 12, "tokens": 768, "bytes_seen": 768, "epochs": 0.5,
        "vocab_size": 65, "flops_per_token": 1.0, "params_total": 10, "params_active": 10,
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "run.json").write_text(json.dumps({"run_id": "0" * 32, "experiment": "x"}))
    (folder / "curve.csv").write_text(
        f"step,train_loss,val_loss,val_bpb,lr\n0,4,4,4,0\n12,{loss},{loss},{loss},0\n"
    )
    (folder / "sample.txt").write_text("sample")
