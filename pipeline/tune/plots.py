"""The tuning report's plots, headless, each saved atomically (see report.py for which).

fANOVA is named explicitly for the importances: Optuna 5 made PED-ANOVA its default.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from nanomoe.atomic import atomic_write_text
from pipeline.plots import new_figure, save_figure
from pipeline.tune.ladder import Ladder, rung_study, study_ladder

MIN_IMPORTANCE_TRIALS = 8  # fewer trials at a rung than this: too few for a forest's split


def _message(ax, title: str, text: str) -> None:
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)


def plot_history(trials: list[FrozenTrial], path: Path) -> None:
    fig, ax = new_figure()
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.value is not None]
    if not complete and not pruned:
        _message(ax, "optimization history", "no finished trial with a value yet")
        return save_figure(fig, path)
    ax.scatter(
        [t.number for t in pruned],
        [t.value for t in pruned],
        marker="x",
        color="tab:gray",
        label="search trials (loss at the rung they stopped)",
    )
    ax.scatter(
        [t.number for t in complete],
        [t.value for t in complete],
        label="finalists (full-split loss at the top rung)",
        zorder=3,
    )
    if complete:
        xs, ys, best = [], [], math.inf
        for t in sorted(complete, key=lambda t: t.number):
            best = min(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set(xlabel="trial", ylabel="validation bits per byte", title="optimization history")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def importance_rung(trials: list[FrozenTrial], ladder: Ladder) -> tuple[int, optuna.Study]:
    """The highest rung with enough trials for an importance estimate (else the lowest)."""
    for rung in reversed(ladder.rungs):
        study = rung_study(trials, ladder, rung)
        if len(study.trials) >= MIN_IMPORTANCE_TRIALS:
            return rung, study
    return ladder.rungs[0], rung_study(trials, ladder, ladder.rungs[0])


def plot_importances(study: optuna.Study, path: Path) -> None:
    """fANOVA (Hutter et al. 2014), Optuna's default evaluator before Optuna 5, which made
    PED-ANOVA the default; named on the plot, with the rung and trial count it used."""
    fig, ax = new_figure(w=8)
    ladder = study_ladder(study)
    rung, at_rung = importance_rung(study.get_trials(deepcopy=False), ladder)
    where = f"at {rung} steps, {len(at_rung.trials)} trials"
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        importances = optuna.importance.get_param_importances(at_rung, evaluator=evaluator)
        if not importances:
            raise ValueError("no parameters to rank")
    except Exception as err:  # too few trials, a constant parameter, ...
        reason = str(err).split("\n")[0][:120]
        _message(ax, "parameter importances", f"not available yet ({where}):\n{reason}")
        return save_figure(fig, path)
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    why = "" if rung == ladder.top else f" (the top rung has < {MIN_IMPORTANCE_TRIALS})"
    ax.set(
        xlabel="share of val-loss variance (Optuna 5's default evaluator is PED-ANOVA)",
        title=f"parameter importances, fANOVA\n{where}{why}",
    )
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, path)


def plot_by_param(trials: list[FrozenTrial], ladder: Ladder, path: Path) -> None:
    """Val loss against n_experts and against fgram_max_n: the finalists at the top rung
    (top row) and every search trial at the last lower rung (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("n_experts", "fgram_max_n")
    rows = ((ladder.top, "top rung"), (ladder.last_lower, "last lower rung"))
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="col", squeeze=False)
    for (rung, label), row in zip(rows, axes, strict=True):
        at = rung_study(trials, ladder, rung).trials
        for key, ax in zip(keys, row, strict=True):
            xs = [t.params[key] for t in at if key in t.params]
            ys = [t.value for t in at if key in t.params]
            ax.scatter(xs, ys, alpha=0.8, color="tab:red" if rung == ladder.top else "tab:blue")
            if key == "n_experts":
                ax.set_xscale("log", base=2)
            if not xs:
                ax.text(0.5, 0.5, "no trial yet", ha="center", va="center", transform=ax.transAxes)
            ax.set(title=f"{label}: {rung} steps, {len(xs)} trials", ylabel="val bpb")
            ax.grid(alpha=0.3)
    for key, ax in zip(keys, axes[-1], strict=True):
        ax.set_xlabel(key)
    fig.suptitle("validation bits per byte against n_experts and fgram_max_n")
    save_figure(fig, path)


def plot_contour(trials: list[FrozenTrial], path: Path, x: str, y: str, rung: int) -> None:
    """Best loss at ``rung`` per (x, y) cell (``trials``: one rung's, from ``rung_study``),
    every cell a pair the study tried."""
    import numpy as np

    fig, ax = new_figure()
    tried = [t for t in trials if x in t.params and y in t.params]
    done = [t for t in tried if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        _message(ax, f"validation loss over {x} x {y}", "no completed trial yet")
        return save_figure(fig, path)
    xs = sorted({t.params[x] for t in tried})  # every pair tried; blank: none completed
    ys = sorted({t.params[y] for t in tried})
    grid = np.full((len(ys), len(xs)), np.nan)
    n = np.zeros_like(grid, dtype=int)
    for t in done:
        i, j = ys.index(t.params[y]), xs.index(t.params[x])
        grid[i, j] = np.fmin(grid[i, j], t.value)
        n[i, j] += 1
    im = ax.imshow(grid, origin="lower", cmap="viridis_r", aspect="auto")
    for i in range(len(ys)):
        for j in range(len(xs)):
            if n[i, j]:
                ax.text(j, i, f"{grid[i, j]:.3f}\n({n[i, j]})", ha="center", va="center", size=8)
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set(xlabel=x, ylabel=y, title=f"best val bpb at {rung} steps over {x} x {y} (trials)")
    fig.colorbar(im, ax=ax, label="validation bits per byte")
    save_figure(fig, path)


def plotly_html(study: optuna.Study, out: Path) -> None:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return
    from optuna import visualization as vis

    for name, make in (
        ("optimization_history", lambda: vis.plot_optimization_history(study)),
        ("param_importances", lambda: vis.plot_param_importances(study)),
        ("contour", lambda: vis.plot_contour(study, params=["n_experts", "fgram_max_n"])),
    ):
        try:
            atomic_write_text(out / f"{name}.html", make().to_html(include_plotlyjs="cdn"))
        except Exception:  # too few trials for this plot yet
            continue
