"""Stage ``train``: one cell of the RoPE x MoE x F-gram grid, for one seed.

    python -m pipeline.train --rope true --moe false --fgram true --seed 1337

Writes experiments/ablation/<run dir>/ with metrics.json, curve.csv (step, train_loss,
val_loss, lr), curve.png, sample.txt and ckpt.pt, and logs one MLflow run (experiment
``nanomoe-ablation``) named for the variant. Flags, params, data and F-grams are all checked
before training starts; a run that fails is marked FAILED in MLflow.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from nanomoe.config import variant_name
from nanomoe.data import load_meta, load_split
from nanomoe.fgram import load_fgrams
from nanomoe.io import atomic_write_text
from nanomoe.model import GPT
from nanomoe.sample import generate_text
from nanomoe.trainer import Trainer, load_checkpoint, set_seed
from pipeline.cli import StageError, run
from pipeline.params import Params, load_params, repo_root
from pipeline.paths import ABLATION, FGRAMS, require_prepared
from pipeline.plots import new_figure, save_figure

EXPERIMENT = "nanomoe-ablation"


def run_dir(rope: bool, moe: bool, fgram: bool, seed: int) -> Path:
    """Must match the outs that dvc.yaml declares for the train stages."""
    b = lambda v: "true" if v else "false"  # noqa: E731
    return ABLATION / f"rope-{b(rope)}_moe-{b(moe)}_fgram-{b(fgram)}_seed-{seed}"


def _bool(text: str) -> bool:
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


def prepare_run(params: Params, rope: bool, moe: bool, fgram: bool, seed: int):
    """Everything that can fail before training: config, data, F-grams."""
    root = repo_root()
    prepared = require_prepared(root)
    meta = load_meta(prepared)
    config = params.model_config(meta["vocab_size"], rope=rope, moe=moe, fgram=fgram)
    train_cfg = params.train_config(seed=seed)
    fgrams = None
    if fgram:
        if not (root / FGRAMS).exists():
            raise StageError(f"{FGRAMS} not found; run the mine_fgrams stage first")
        fgrams = load_fgrams(root / FGRAMS, max_n=config.fgram_max_n)
    train = load_split(prepared, "train")
    val = load_split(prepared, "val")
    unknown = sorted(set(params.sample.prompt or "") - set(meta["chars"]))
    if unknown:
        raise StageError(
            f"params.yaml: sample.prompt has characters not in the corpus: {''.join(unknown)!r}"
        )
    return meta, config, train_cfg, fgrams, train, val


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.train", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--rope", type=_bool, required=True, help="true: RoPE; false: learned positions"
    )
    ap.add_argument("--moe", type=_bool, required=True, help="true: top-k MoE feed-forward")
    ap.add_argument("--fgram", type=_bool, required=True, help="true: mined F-gram embeddings")
    ap.add_argument("--seed", type=int, required=True, help="training seed")
    a = ap.parse_args(argv)

    params = load_params()
    meta, config, train_cfg, fgrams, train, val = prepare_run(
        params, a.rope, a.moe, a.fgram, a.seed
    )
    root = repo_root()
    out = root / run_dir(a.rope, a.moe, a.fgram, a.seed)
    out.mkdir(parents=True, exist_ok=True)
    variant = variant_name(a.rope, a.moe, a.fgram)

    import mlflow

    from pipeline.tracking import MLflowCallback, flatten, git_commit, retry_locked, use_experiment

    use_experiment(EXPERIMENT)
    tags = {
        "variant": variant,
        "git_commit": git_commit() or "unknown",
        "data_sha256": params.data.sha256 or "unchecked",
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    with mlflow.start_run(run_name=variant, tags=tags) as mlrun:
        run_id = mlrun.info.run_id
        logged = {
            **flatten(config.to_dict(), "model."),
            **flatten(train_cfg.to_dict(), "train."),
            "rope": a.rope,
            "moe": a.moe,
            "fgram": a.fgram,
            "n_experts": config.n_experts,
            "top_k": config.top_k,
            "fgram_max_n": config.fgram_max_n,
            "seed": a.seed,
            "n_fgrams": len(fgrams) if fgrams is not None else 0,
        }
        retry_locked(mlflow.log_params)(logged)

        set_seed(a.seed)
        model = GPT(config, fgrams=fgrams)
        trainer = Trainer(
            model,
            train,
            val,
            train_cfg,
            callbacks=[MLflowCallback(run_id)],
            checkpoint_path=out / "ckpt.pt",
            checkpoint_extra={"chars": meta["chars"]},
        )
        result = trainer.fit()

        prompt = params.sample.prompt or meta["chars"][int(np.asarray(val[:1])[0])]
        sample = generate_text(
            load_checkpoint(out / "ckpt.pt"),
            prompt,
            params.sample.tokens,
            params.sample.temperature,
            params.sample.top_k,
            seed=a.seed,
        )
        metrics = {
            "variant": variant,
            "rope": a.rope,
            "moe": a.moe,
            "fgram": a.fgram,
            "seed": a.seed,
            "val_loss": result.val_loss,
            "train_loss": result.train_loss,
            "tokens_per_sec": result.tokens_per_sec,
            "wall_s": result.wall_s,
            "steps": result.steps,
            "params_total": result.params_total,
            "params_active": result.params_active,
        }
        if a.moe:
            metrics["expert_load"] = [
                [result.moe[f"load_l{layer}_e{e}"] for e in range(config.n_experts)]
                for layer in range(config.n_layer)
            ]
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
        atomic_write_text(out / "curve.csv", curve_csv(result.history))
        atomic_write_text(out / "sample.txt", sample)
        plot_curve(result.history, f"{variant} (seed {a.seed})", out / "curve.png")

        final = {
            "final_val_loss": result.val_loss,  # the full validation split: the reported number
            "final_train_loss": result.train_loss,
            "tokens_per_sec": result.tokens_per_sec,
            "wall_s": result.wall_s,
            "params_total": float(result.params_total),
            "params_active": float(result.params_active),
        }
        retry_locked(mlflow.log_metrics)(final, step=result.steps, run_id=run_id)
        for name in ("metrics.json", "sample.txt", "curve.png", "curve.csv"):
            retry_locked(mlflow.log_artifact)(str(out / name), run_id=run_id)
    print(
        f"{variant} seed {a.seed}: val_loss {result.val_loss:.4f}, "
        f"{result.tokens_per_sec:,.0f} tok/s, {result.wall_s:.0f}s -> {out.relative_to(root)}/"
    )
    return 0


if __name__ == "__main__":
    run(main)
