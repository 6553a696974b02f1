"""Stage ``report``: the ablation table, effects of each switch with their noise, curves,
samples, and one MLflow summary run for the whole ablation.

Reads the cells the train stages wrote under experiments/ablation/ (every cell of params.yaml's
``grid:`` x every seed: ``pipeline/report/results.py``) and writes experiments/ablation.csv,
report.md, ablation.png, compute.png and summary.json (the DVC metrics).

Every comparison uses the final validation loss (the full split after the last step). The
effects are the 2^k - 1 contrasts of the k switches the grid gives both levels. With two or
more seeds they are judged as a replicated factorial with the seeds as blocks (the pooled
cell x seed noise); with one seed by Lenth's pseudo standard error, which needs at least 7
effects (k >= 3). With fewer, or with no factor, the report says there is no verdict rather
than guess. A variant is called best only when it is separated from every other: Hsu's MCB
with seeds, a per-comparison margin with one (``pipeline/report/analysis.py``).
"""

from __future__ import annotations

import argparse
import io
import json

from nanomoe.atomic import atomic_write_text
from nanomoe.switches import BY_NAME
from pipeline.plots import plot_ablation, plot_compute
from pipeline.project import Project
from pipeline.report.analysis import analyse
from pipeline.report.effects_text import pm
from pipeline.report.markdown import render_markdown, variant_table, verdict
from pipeline.report.provenance import mixed, portable, provenance_lines, unresolved
from pipeline.report.results import collect
from pipeline.report.summary import file_ablation, log_summary_run, summary
from pipeline.stage import StageError, run_stage
from pipeline.tracking import check_store, tracking_uri


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m pipeline.report", description=__doc__.split("\n")[0]
    ).parse_args(argv)
    project = Project.load()
    params = project.params
    layout, grid, kept = project.layout, params.grid, params.cells()
    check_store()  # a tracking server that does not answer: one line now, not at the end
    for levels in kept:  # dvc.yaml written for another grid: say so, not "missing"
        layout.train_stage(levels)
    df, curves, samples = collect(layout.require(layout.ablation), grid, params.seeds, kept)
    a = analyse(df, grid, design=params.design, **params.analysis.to_dict())
    table = variant_table(df, a.ranking)
    out = layout.outs("report")
    buf = io.StringIO()
    df.drop(columns="run_id").sort_values([*BY_NAME, "seed"]).to_csv(buf, index=False)
    atomic_write_text(out["ablation.csv"], buf.getvalue())
    missing = unresolved(list(df.run_id))
    origin = provenance_lines(df, missing, portable(tracking_uri(), project.root))
    atomic_write_text(out["report.md"], render_markdown(df, table, a, samples, origin))
    lowest = float(table.final_val_bpb.min())
    plot_ablation(curves, a.ranking.order, lowest, out["ablation.png"])
    per_step = (df.tokens / df.steps * df.flops_per_token).groupby(df.variant).first()
    plot_compute(curves, per_step.to_dict(), a.ranking.order, lowest, out["compute.png"])
    summ = summary(df, a, grid, missing)
    atomic_write_text(out["summary.json"], json.dumps(summ, indent=2))
    print(table[["variant", "final_val_bpb", "final_std", "best_val_bpb"]].to_string(index=False))
    for r in a.effects.itertuples():
        print(f"{r.effect:24s} {pm(r.delta, r.margin):>18s}  {r.verdict or 'no verdict'}")
    print(verdict(a).replace("**", "").replace("`", ""))
    for line in mixed(df):
        print(f"warning: cells trained under different runtimes: {line} (see report.md)")
    if missing:
        print(f"warning: {len(missing)} cell run(s) not in {tracking_uri()}: see report.md")
    names = ("report.md", "ablation.png", "compute.png", "ablation.csv", "summary.json")
    try:
        run_id = log_summary_run(df, params, summ, [out[n] for n in names])
        filed = file_ablation(run_id, df, params.seeds[0], summ)
    except Exception as err:
        why = f"{err.__class__.__name__}: {(str(err).splitlines() or [''])[0][:200]}"
        raise StageError(
            f"{layout.relative(out['report.md'])}: written, but the MLflow summary run failed "
            f"({why}); fix the store (MLFLOW_TRACKING_URI) and run dvc repro report"
        ) from None
    print(f"report: {layout.relative(out['report.md'])}; MLflow summary run {run_id}, {filed}")
    return 0


if __name__ == "__main__":
    run_stage(main)
