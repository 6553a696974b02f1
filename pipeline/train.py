"""Stage ``train``: one cell of the RoPE x MoE x F-gram grid, for one seed.

    python -m pipeline.train --rope true --moe false --fgram true --seed 1337

Writes the cell's outs that dvc.yaml declares (metrics.json, curve.csv with step, train_loss,
val_loss and lr, curve.png, sample.txt, ckpt.pt) and logs one MLflow run (experiment
``nanomoe-ablation``) named for the variant. Flags, params, data and F-grams are all checked
before training starts; a run that fails is marked FAILED in MLflow.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanomoe.atomic import atomic_write_text
from nanomoe.config import GPTConfig, TrainConfig, variant_name
from nanomoe.data import load_meta, load_split
from nanomoe.fgram import Fgram, load_fgrams
from nanomoe.model import GPT
from nanomoe.sample import generate_text
from nanomoe.trainer import Trainer, TrainResult, load_checkpoint, set_seed
from pipeline.layout import Layout
from pipeline.params import Params, load_params
from pipeline.plots import new_figure, save_figure
from pipeline.stage import StageError, run_stage
from pipeline.tracking import flatten, git_commit, tracked_run

EXPERIMENT = "nanomoe-ablation"


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def curve_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=["step", "train_loss", "val_loss", "lr"], lineterminator="\n"
    )
    w.writeheader()
    for row in history:
        w.writerow({k: row[k] for k in w.fieldnames})
    return buf.getvalue()


def plot_curve(history: list[dict], title: str, path: Path) -> None:
    steps = [r["step"] for r in history]
    fig, ax = new_figure(6, 4)
    ax.plot(steps, [r["train_loss"] for r in history], label="train")
    ax.plot(steps, [r["val_loss"] for r in history], label="val")
    ax.set(xlabel="step", ylabel="cross-entropy (nats/char)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


@dataclass
class Cell:
    """One cell of the grid, with everything checked before it trains."""

    rope: bool
    moe: bool
    fgram: bool
    seed: int
    chars: list[str]
    config: GPTConfig
    train_cfg: TrainConfig
    fgrams: list[Fgram] | None
    train: np.ndarray
    val: np.ndarray
    files: dict[str, Path]  # the cell's outs in dvc.yaml, by file name

    @property
    def variant(self) -> str:
        return variant_name(self.rope, self.moe, self.fgram)


def prepare_cell(params: Params, layout: Layout, rope: bool, moe: bool, fgram: bool, seed: int):
    """Everything that can fail before training: config, data, F-grams, the prompt."""
    prepared = layout.require(layout.prepared)
    meta = load_meta(prepared)
    config = params.model_config(meta["vocab_size"], rope=rope, moe=moe, fgram=fgram)
    fgrams = None
    if fgram:
        fgrams = load_fgrams(layout.require(layout.fgrams), max_n=config.fgram_max_n)
    unknown = sorted(set(params.sample.prompt or "") - set(meta["chars"]))
    if unknown:
        raise StageError(
            f"params.yaml: sample.prompt: has characters not in the corpus: {''.join(unknown)!r}"
        )
    return Cell(
        rope, moe, fgram, seed,
        chars=meta["chars"],
        config=config,
        train_cfg=params.train_config(seed),
        fgrams=fgrams,
        train=load_split(prepared, "train"),
        val=load_split(prepared, "val"),
        files=layout.run_files(rope, moe, fgram, seed),
    )  # fmt: skip


def cell_metrics(cell: Cell, result: TrainResult) -> dict:
    """metrics.json: what the report reads and DVC shows."""
    metrics = {
        "variant": cell.variant,
        "rope": cell.rope,
        "moe": cell.moe,
        "fgram": cell.fgram,
        "seed": cell.seed,
        "val_loss": result.val_loss,
        "train_loss": result.train_loss,
        "tokens_per_sec": result.tokens_per_sec,
        "wall_s": result.wall_s,
        "steps": result.steps,
        "params_total": result.params_total,
        "params_active": result.params_active,
    }
    if result.moe is not None:
        metrics["expert_load"] = result.moe.load
    return metrics


def train_cell(cell: Cell, params: Params, run) -> TrainResult:
    """Train, sample and write the cell's files; log them to ``run``."""
    run.log_params(
        {
            **flatten(cell.config.to_dict(), "model."),
            **flatten(cell.train_cfg.to_dict(), "train."),
            "rope": cell.rope,
            "moe": cell.moe,
            "fgram": cell.fgram,
            "n_experts": cell.config.n_experts,
            "top_k": cell.config.top_k,
            "fgram_max_n": cell.config.fgram_max_n,
            "seed": cell.seed,
            "n_fgrams": len(cell.fgrams) if cell.fgrams is not None else 0,
        }
    )
    files = cell.files
    set_seed(cell.seed)
    model = GPT(cell.config, fgrams=cell.fgrams)
    trainer = Trainer(
        model,
        cell.train,
        cell.val,
        cell.train_cfg,
        callbacks=[run.callback()],
        checkpoint_path=files["ckpt.pt"],
        checkpoint_extra={"chars": cell.chars},
    )
    result = trainer.fit()

    s = params.sample
    prompt = s.prompt or cell.chars[int(np.asarray(cell.val[:1])[0])]
    ckpt = load_checkpoint(files["ckpt.pt"])
    sample = generate_text(ckpt, prompt, s.tokens, s.temperature, s.top_k, seed=cell.seed)
    atomic_write_text(files["metrics.json"], json.dumps(cell_metrics(cell, result), indent=2))
    atomic_write_text(files["curve.csv"], curve_csv(result.history))
    atomic_write_text(files["sample.txt"], sample)
    plot_curve(result.history, f"{cell.variant} (seed {cell.seed})", files["curve.png"])

    final = {
        "final_val_loss": result.val_loss,  # the full validation split: the reported number
        "final_train_loss": result.train_loss,
        "tokens_per_sec": result.tokens_per_sec,
        "wall_s": result.wall_s,
        "params_total": float(result.params_total),
        "params_active": float(result.params_active),
    }
    run.log_metrics(final, step=result.steps)
    names = ("metrics.json", "sample.txt", "curve.png", "curve.csv")
    run.log_artifacts([files[n] for n in names])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.train", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--rope", type=parse_bool, required=True, help="true: RoPE; false: learned positions"
    )
    ap.add_argument("--moe", type=parse_bool, required=True, help="true: top-k MoE feed-forward")
    ap.add_argument("--fgram", type=parse_bool, required=True, help="true: mined F-gram embeddings")
    ap.add_argument("--seed", type=int, required=True, help="training seed")
    a = ap.parse_args(argv)

    layout = Layout.load()
    params = load_params(layout.root / "params.yaml")
    cell = prepare_cell(params, layout, a.rope, a.moe, a.fgram, a.seed)
    tags = {
        "variant": cell.variant,
        "git_commit": git_commit(),
        "data_sha256": params.data.sha256 or "unchecked",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    with tracked_run(EXPERIMENT, cell.variant, tags) as run:
        result = train_cell(cell, params, run)
    out = layout.relative(cell.files["metrics.json"].parent)
    print(
        f"{cell.variant} seed {a.seed}: val_loss {result.val_loss:.4f}, "
        f"{result.tokens_per_sec:,.0f} tok/s, {result.wall_s:.0f}s -> {out}/"
    )
    return 0


if __name__ == "__main__":
    run_stage(main)
