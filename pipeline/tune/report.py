"""The tuning report, rebuilt from the study's storage alone.

Writes, atomically, to one folder: ``best.json`` (best params and value at the top rung,
how many trials each rung judged, the ladder's saving, the confirmation), ``trials.csv`` (one
row per trial) and four PNG plots: the optimization history, the parameter importances (at
the top rung when enough finalists reached it, else at the highest rung that has enough
trials; fANOVA, named on the plot), the validation loss against ``n_experts`` and against
``fgram_max_n`` at the top rung and at the last lower rung (``by_param.png``), and the loss
over ``n_experts`` x ``fgram_max_n`` at the last lower rung (``contour.png``: one cell per
pair, the best loss there). The plots are drawn in plots.py. With plotly installed, Optuna's
interactive versions are written as HTML too. ``print_summary``: the few lines of it that
the command prints.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from nanomoe.atomic import atomic_write_text
from pipeline.tune.confirm import summarize as confirmation_summary
from pipeline.tune.ladder import (
    FINISHED,
    Ladder,
    best_trial,
    is_finalist,
    rung_study,
    study_ladder,
)
from pipeline.tune.plots import (
    plot_by_param,
    plot_contour,
    plot_history,
    plot_importances,
    plotly_html,
)
from pipeline.tune.settings import params_text

PLOTS = ("optimization_history.png", "param_importances.png", "by_param.png", "contour.png")
METRIC = "full-split validation bits per byte (val_bpb)"


def rung_counts(trials: list[FrozenTrial], ladder: Ladder) -> list[dict]:
    """How many trials each rung judged (the top: finalists that finished it)."""
    done = [t for t in trials if t.state in FINISHED]
    return [
        {
            "steps": r,
            "trials": sum(
                r in ladder.reached(t) for t in done if r == ladder.top or not is_finalist(t)
            ),
        }
        for r in ladder.rungs
    ]


def pruning_saving(trials: list[FrozenTrial]) -> tuple[float, int, int]:
    """(saving, steps trained, steps had every finished trial run to its max_iters)."""
    done = [t for t in trials if t.state in FINISHED and "steps" in t.user_attrs]
    run = sum(int(t.user_attrs["steps"]) for t in done)
    full = sum(int(t.user_attrs["max_iters"]) for t in done)
    return (1.0 - run / full if full else 0.0), run, full


def summary(study: optuna.Study) -> dict:
    trials = study.get_trials(deepcopy=False)
    best = best_trial(trials)
    saving, run, full = pruning_saving(trials)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {
        "study": study.study_name,
        "metric": METRIC,
        "direction": "minimize",
        "best_value": best.value if best else None,
        "best_params": best.params if best else None,
        "best_trial": best.number if best else None,
        "finished": sum(t.state in FINISHED for t in trials),
        "trials": states,
        "ladder": study_ladder(study).describe(),
        "rungs": rung_counts(trials, study_ladder(study)),
        "pruning_saving": saving,
        "steps_trained": run,
        "steps_without_pruning": full,
        "confirmation": confirmation_summary(study),
    }


def progress_line(study: optuna.Study, frozen: FrozenTrial, n_trials: int) -> str:
    """One line per finished trial: its value and params, the best so far, the count."""
    trials = study.get_trials(deepcopy=False)
    best = best_trial(trials)
    params = params_text(frozen.params)
    value = "n/a" if frozen.value is None else f"{frozen.value:.4f}"
    best_text = f"{best.value:.4f} (trial {best.number})" if best else "n/a"
    done = sum(t.state in FINISHED for t in trials)
    return (
        f"trial {frozen.number:3d} {frozen.state.name.lower():8s} val_bpb {value} "
        f"after {frozen.user_attrs.get('steps', 0)} steps ({params}) | best {best_text} | "
        f"{done}/{n_trials} finished"
    )


def trials_csv(trials: list[FrozenTrial]) -> str:
    names = sorted({k for t in trials for k in t.params}, key=lambda k: (k != "n_experts", k))
    fields = ["number", "state", "value", "duration_s", "steps", *names, "note"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for t in trials:
        a = t.user_attrs
        note = "surplus" if a.get("surplus") else a.get("note", "")
        w.writerow(
            {
                "number": t.number,
                "state": t.state.name,
                "value": "" if t.value is None else repr(t.value),
                "duration_s": f"{t.duration.total_seconds():.1f}" if t.duration else "",
                "steps": a.get("steps", ""),
                **{k: t.params.get(k, "") for k in names},
                "note": note,
            }
        )
    return buf.getvalue()


def write_report(study: optuna.Study, out: Path) -> dict:
    """Write best.json, trials.csv and the plots to ``out``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    info = summary(study)
    atomic_write_text(out / "best.json", json.dumps(info, indent=2) + "\n")
    atomic_write_text(out / "trials.csv", trials_csv(trials))
    plot_history(trials, out / PLOTS[0])
    plot_importances(study, out / PLOTS[1])
    plot_by_param(trials, study_ladder(study), out / PLOTS[2])
    ladder = study_ladder(study)
    at_last = rung_study(trials, ladder, ladder.last_lower).trials
    plot_contour(at_last, out / PLOTS[3], "n_experts", "fgram_max_n", ladder.last_lower)
    plotly_html(study, out)
    return info


def print_summary(info: dict, out: Path, root: Path) -> None:
    """What the command prints of ``write_report``'s ``info``: the study in a few lines."""
    t = info["trials"]
    print(
        f"study {info['study']}: {info['finished']} finished ({t['complete']} complete, "
        f"{t['pruned']} pruned), {t['fail']} failed"
    )
    if info["best_value"] is not None:
        params = " ".join(f"{k}={v}" for k, v in info["best_params"].items())
        print(f"best val_bpb {info['best_value']:.4f} (trial {info['best_trial']}): {params}")
    rungs = ", ".join(f"{r['steps']}: {r['trials']}" for r in info["rungs"])
    print(f"trials judged at each rung (steps: trials): {rungs}")
    print(
        f"the ladder saved {info['pruning_saving']:.1%} of training steps: "
        f"{info['steps_trained']:,} steps trained of {info['steps_without_pruning']:,} "
        "had every finished trial trained to the top rung"
    )
    print(f"report -> {out.relative_to(root) if out.is_relative_to(root) else out}/")
