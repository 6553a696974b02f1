"""Stage ``train``: one cell of the grid (a level of every switch in nanomoe/switches.py), for
one seed.

    python -m pipeline.train --rope true --moe false --fgram true --seed 1337

Writes the cell's outs that dvc.yaml declares (metrics.json, curve.csv with step, train_loss,
val_loss and lr, curve.png, sample.txt, ckpt.pt, and run.json naming its MLflow run) and logs
one MLflow run (experiment ``nanomoe-ablation``, tag ``kind=cell``) named for the variant.
Flags, params, data and F-grams are all checked before training starts; a failed run is
FAILED in MLflow. On SIGTERM (a scheduler preempting the job) the cell saves a checkpoint at
the step it reached and exits 143; run again, it resumes there (preempt.py, resume.py).
DDP over several processes, one global batch split over them (launch.py):
``torchrun --standalone --nproc_per_node=N -m pipeline.train ...``; ``NANOMOE_NPROC=N dvc repro``
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from nanomoe import distributed
from nanomoe.atomic import atomic_write_bytes, atomic_write_text
from nanomoe.checkpoint import load_checkpoint, model_file, tokenizer_entry
from nanomoe.device import runtime
from nanomoe.model import GPT
from nanomoe.sample import generate_text
from nanomoe.switches import SWITCHES
from nanomoe.trainer import Callback, Preempted, Trainer, TrainResult, set_seed
from pipeline.plots import curve_csv, plot_curve
from pipeline.project import Project
from pipeline.stage import StageError, run_stage
from pipeline.tracking import Run, check_store, tracked, tracking_uri
from pipeline.train.cell import Cell, prepare_cell
from pipeline.train.cell_run import EXPERIMENT, log_results, open_run, relog_history
from pipeline.train.launch import from_main, launch_cell
from pipeline.train.preempt import EXIT_PREEMPTED, Preemption
from pipeline.train.resume import fingerprint
from pipeline.train.run_callback import MLflowCallback

RawHelp = argparse.RawDescriptionHelpFormatter


def cell_metrics(cell: Cell, result: TrainResult, world_size: int) -> dict:
    """metrics.json: what the report reads and DVC shows, and what the cell trained on
    (device, dtype, torch, processes, threads: the run cache cannot see them)."""
    metrics = {
        "variant": cell.variant,
        **cell.levels,
        "seed": cell.seed,
        "final_val_loss": result.val_loss,  # the full validation split after the last step
        "best_val_loss": result.best_val_loss,  # the lowest periodic estimate (eval batches)
        "best_step": result.best_step,
        # the same in bits per UTF-8 byte of the validation text: across tokenizers
        "final_val_bpb": result.val_bpb,
        "best_val_bpb": result.best_val_bpb,
        "train_loss": result.train_loss,
        "tokens_per_sec": result.tokens_per_sec,
        "wall_s": result.wall_s,
        "steps": result.steps,
        "tokens": result.tokens,
        **seen(cell.meta, result.tokens),
        "flops_per_token": result.flops_per_token,
        "params_total": result.params_total,
        "params_active": result.params_active,
        **runtime(cell.train_cfg.device, cell.train_cfg.dtype, world_size),
    }
    if result.moe is not None:  # routing during the final eval interval of training
        metrics.update(lb_loss=result.moe.lb_loss, z_loss=result.moe.z_loss)
        metrics["expert_load"] = result.moe.load
    return metrics


def seen(meta: dict, tokens: int) -> dict:
    """What the cell saw in training, in the train split's units: its bytes (tokens x the
    split's bytes per token) and epochs, and the vocabulary it predicts over."""
    per_token = meta["text"]["train"]["bytes"] / meta["n_train"]
    return {
        "bytes_seen": round(tokens * per_token),
        "epochs": tokens / meta["n_train"],
        "vocab_size": meta["vocab_size"],
    }


def store_failed(err: Exception, cell: Cell) -> StageError:
    return StageError(
        f"{tracking_uri()}: the MLflow store failed ({err.__class__.__name__}); "
        f"{cell.variant}'s files and final checkpoint are kept: fix the store and run "
        "dvc repro again, which completes the run without retraining"
    )


class Progress(Callback):
    """The step reached, at every eval, beside the checkpoint: for ``pipeline.cluster``."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell

    def on_eval(self, step: int, metrics: dict, moe) -> None:
        self.cell.resume.save_step(step, self.cell.train_cfg.max_iters)


def fit_cell(cell: Cell, callbacks: list, resume: bool, fp: dict, stop: Preemption) -> TrainResult:
    """Train the cell from step 0, or on from its checkpoint (every rank, under torchrun);
    ``stop``: SIGTERM saves a checkpoint at the step reached and raises ``Preempted``."""
    set_seed(cell.seed)
    model = GPT(cell.config, fgrams=cell.fgrams)
    trainer = Trainer(
        model,
        cell.train,
        cell.val,
        cell.train_cfg,
        callbacks=callbacks,
        checkpoint_path=cell.resume.checkpoint,
        checkpoint_extra={**tokenizer_entry(cell.tokenizer), "fingerprint": fp},
        token_bytes=cell.tokenizer.token_bytes(),
        stop=stop,
    )
    with stop.armed():
        return trainer.fit(resume_from=cell.resume.checkpoint if resume else None)


def train_cell(
    project: Project, cell: Cell, run: Run, resumed: dict | None, fp: dict, world_size: int
) -> TrainResult:
    """Train (or go on training), sample and write the cell's files; log them to ``run``."""
    files, checkpoint = cell.files, cell.resume.checkpoint
    skip = relog_history(run, resumed["history"]) if resumed is not None else None
    callback = MLflowCallback(run, skip=skip)
    result = fit_cell(cell, [callback, Progress(cell)], resumed is not None, fp, Preemption())

    atomic_write_bytes(files["ckpt.pt"], checkpoint.read_bytes())
    s = project.params.sample
    prompt = s.prompt or cell.tokenizer.decode(np.asarray(cell.val[:1]))
    ckpt = load_checkpoint(files["ckpt.pt"])
    sample = generate_text(ckpt, prompt, s.tokens, s.temperature, s.top_k, seed=cell.seed)
    atomic_write_text(
        files["metrics.json"], json.dumps(cell_metrics(cell, result, world_size), indent=2)
    )
    atomic_write_text(files["curve.csv"], curve_csv(result.history))
    atomic_write_text(files["sample.txt"], sample)
    atomic_write_text(files["run.json"], json.dumps({"run_id": run.id, "experiment": EXPERIMENT}))
    plot_curve(result.history, f"{cell.variant} (seed {cell.seed})", files["curve.png"])
    if callback.error is not None:
        raise store_failed(callback.error, cell)

    try:
        log_results(run, result, files, model_file(ckpt), prompt, project.root)
    except Exception as err:
        raise store_failed(err, cell) from None
    return result


def level_parser(switch):
    """argparse's ``type`` for ``switch``'s flag: its level, or a usage error."""

    def parse(text: str):
        try:
            return switch.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.train", description=__doc__, formatter_class=RawHelp
    )
    for s in SWITCHES:  # the registry's switches, each a required flag: --rope true ...
        levels = " or ".join(s.spell(v) for v in s.levels)
        ap.add_argument(f"--{s.name}", type=level_parser(s), required=True, help=levels)
    ap.add_argument("--seed", type=int, required=True, help="training seed")
    a = ap.parse_args(argv)

    project = Project.load()
    check_store()  # a tracking server that does not answer: one line in seconds, not minutes
    cell = prepare_cell(project, {s.name: getattr(a, s.name) for s in SWITCHES}, a.seed)
    launch = launch_cell(cell.train_cfg, argv)  # torchrun ranks, or NANOMOE_NPROC's relaunch
    fp = fingerprint(cell.config, cell.train_cfg, cell.inputs)
    try:
        if not launch.is_main:  # a torchrun rank other than 0: trains, writes nothing
            fit_cell(cell, [], resume=from_main(None), fp=fp, stop=Preemption())
            return 0
        try:
            run, resumed = open_run(project, cell, fp)
        except Exception as err:  # a store that cannot be opened: before any training
            raise StageError(
                f"{tracking_uri()}: cannot open the MLflow store ({err.__class__.__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); check MLFLOW_TRACKING_URI, "
                "or the file and its permissions"
            ) from None
        from_main(resumed is not None)
        if resumed is not None:
            print(f"{cell.variant} seed {a.seed}: resuming from step {resumed['step']}", flush=True)
        with tracked(run):
            result = train_cell(project, cell, run, resumed, fp, launch.world_size)
    except Preempted as stopped:
        if launch.is_main:
            cell.resume.save_step(stopped.step, cell.train_cfg.max_iters)
            where = project.layout.relative(cell.resume.checkpoint)
            print(
                f"preempted: {cell.variant} seed {a.seed} saved at step {stopped.step} of "
                f"{cell.train_cfg.max_iters} to {where}; run it again to resume there",
                file=sys.stderr,
                flush=True,
            )
        return EXIT_PREEMPTED
    finally:
        distributed.shutdown()
    cell.resume.clear()
    out = project.layout.relative(cell.files["metrics.json"].parent)
    print(
        f"{cell.variant} seed {a.seed}: val_loss {result.val_loss:.4f}, "
        f"{result.tokens_per_sec:,.0f} tok/s, {result.wall_s:.0f}s -> {out}/"
    )
    return 0


if __name__ == "__main__":
    run_stage(main)
