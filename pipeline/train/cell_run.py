"""The MLflow run of one grid cell: opened (or resumed) under the variant's name and seed
(``rope+moe-fgram s1338``) with its corpus splits as dataset inputs, its history relogged
after a resume, and its results logged at the end: final figures, plots, the sample, and the
cell's logged model (``runs:/<run id>/model``: a pyfunc that generates text, around the model
file of weights, config, tokenizer and F-gram table; ``pipeline/tracking/model.py``), which
``python -m pipeline.sample --run-id`` samples from on any tracking server.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nanomoe.trainer import TrainResult
from pipeline.project import Project
from pipeline.tracking import Run, close_dead_run, flatten, git_commit
from pipeline.tracking.dataset import log_corpus
from pipeline.tracking.model import log_model
from pipeline.train.cell import Cell

EXPERIMENT = "nanomoe-ablation"
ARTIFACTS = ("metrics.json", "sample.txt", "curve.png", "curve.csv")


def open_run(project: Project, cell: Cell, fp: dict) -> tuple[Run, dict | None]:
    """(the cell's MLflow run, the checkpoint it resumes from or None): the interrupted run
    goes on when the checkpoint fits this cell; else the old run is marked KILLED."""
    resumed, why = cell.resume.check(fp)
    old = cell.resume.run_id()
    if why:
        where = project.layout.relative(cell.resume.checkpoint)
        print(f"{where}: discarded, {why}; {cell.variant} trains from step 0", flush=True)
    if resumed is None:
        cell.resume.discard()
        if old:
            close_dead_run(old, "its cell started over", status="KILLED")
    run = Run.reopen(old) if resumed is not None and old else None
    if run is None:
        tags = {
            "kind": "cell",
            "variant": cell.variant,
            "git_commit": git_commit(),
            "data_sha256": project.params.data.fingerprint,
        }
        if os.environ.get("DVC_EXP_NAME"):
            tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
        run = Run.start(EXPERIMENT, run_name(cell.variant, cell.seed), tags)
        run.log_params(
            {
                **flatten(cell.config.to_dict(), "model."),
                **flatten(cell.train_cfg.to_dict(), "train."),
                **cell.levels,
                "seed": cell.seed,
                "n_experts": cell.config.n_experts,
                "top_k": cell.config.top_k,
                "fgram_max_n": cell.config.fgram_max_n,
                "n_fgrams": len(cell.fgrams) if cell.fgrams is not None else 0,
            }
        )
        urls = [shard.url for shard in project.params.data.shards()]
        log_corpus(run, urls, corpus_sha256(project, cell), cell.tokenizer.kind, cell.meta)
    cell.resume.save_run(run.id)
    return run, resumed


def run_name(variant: str, seed: int) -> str:
    """A cell run's name: its variant and seed, ``rope+moe-fgram s1338``."""
    return f"{variant} s{seed}"


def corpus_sha256(project: Project, cell: Cell) -> str:
    """The corpus's sha256 (data.sha256's, one for several shards); where params.yaml checks
    none, the sha256 of the cell's prepared splits, the bytes it trained and was judged on."""
    if project.params.data.digest is not None:
        return project.params.data.digest
    h = hashlib.sha256()
    for split in ("train", "val"):
        h.update((project.layout.prepared(cell.tokenizer.kind) / f"{split}.bin").read_bytes())
    return h.hexdigest()


def relog_history(run: Run, history: list[dict]) -> set[int]:
    """Log the checkpoint's evals the run lacks (a kill can fall between saving one and
    logging it); return every eval step the run now holds."""
    logged = run.logged_steps("val_loss")
    for row in history:
        if row["step"] not in logged:
            keys = ("train_loss", "val_loss", "val_bpb", "lr")
            run.log_metrics({k: row[k] for k in keys if k in row}, row["step"])
            logged.add(row["step"])
    return logged


def log_results(
    run: Run, result: TrainResult, files: dict[str, Path], model: bytes, prompt: str, root: Path
) -> str:
    """The run's final figures at the last step, its files, and its model (linked to those
    figures, with ``prompt`` its input example); the model's id."""
    final = {
        "final_val_loss": result.val_loss,  # the full validation split: the reported number
        "best_val_loss": result.best_val_loss,  # the best periodic estimate, as nanoGPT's
        "best_step": float(result.best_step),
        "final_val_bpb": result.val_bpb,  # the same in bits per byte, across tokenizers
        "best_val_bpb": result.best_val_bpb,
        "final_train_loss": result.train_loss,
        "tokens_per_sec": result.tokens_per_sec,
        "wall_s": result.wall_s,
        "params_total": float(result.params_total),
        "params_active": float(result.params_active),
    }
    run.log_metrics(final, step=result.steps)
    run.log_artifacts([files[n] for n in ARTIFACTS])
    return log_model(run, model, result.steps, prompt, root)
