"""The real `dvc repro`, end to end, in a throwaway copy of the project: a 2^3 grid of
moe x fgram x tokenizer (char and a 320-token BPE) on a corpus that is not ASCII."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from _project import env_for, git, make_project, run_module, tail

# rope held: the tokenizer is the factor under test, at 8 cells as before
GRID = {"rope": [False], "moe": [False, True], "fgram": [False, True], "tokenizer": ["char", "bpe"]}


def dvc(root, *args):
    return run_module(root, "dvc", *args)


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    overrides = {"grid": GRID, "tokenizer": {"vocab_size": 320}}
    root = make_project(tmp_path_factory.mktemp("project"), overrides=overrides)
    assert run_module(root, "pipeline.grid").returncode == 0
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert dvc(root, "init", "-q").returncode == 0
    assert dvc(root, "config", "core.analytics", "false").returncode == 0
    first = dvc(root, "repro")
    return root, first


def test_dvc_repro_runs_every_stage(repro):
    root, first = repro
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("download", "report"):
        assert f"Running stage '{stage}'" in first.stdout
    for stage in ("tokenizer", "prepare", "mine_fgrams"):
        for tok in ("char", "bpe"):
            assert f"Running stage '{stage}@{tok}'" in first.stdout
    assert first.stdout.count("Running stage 'train") == 8


def test_report_has_one_row_per_variant_and_seven_effects_judged_by_lenth(repro):
    root, _ = repro
    df = pd.read_csv(root / "experiments" / "ablation.csv")
    assert len(df) == 8
    assert set(map(tuple, df[["moe", "fgram", "tokenizer"]].values.tolist())) == {
        (m, f, t) for m in (False, True) for f in (False, True) for t in ("char", "bpe")
    }
    assert list(df.columns[:6]) == ["variant", "rope", "moe", "fgram", "tokenizer", "seed"]
    assert (df.final_val_loss > 0).all() and (df.params_active <= df.params_total).all()
    assert (df.final_val_bpb > 0).all() and (df.best_val_bpb > 0).all()
    assert (df.best_step <= df.steps).all()
    report = (root / "experiments" / "report.md").read_text(encoding="utf-8")
    summary = json.loads((root / "experiments" / "summary.json").read_text())
    assert summary["method"] == "lenth" and "Lenth's method" in report
    lenth = summary["lenth"]  # one seed: df = m/3, sigma = PSE sqrt((m + 1)/4) (the issue's)
    assert summary["df"] == pytest.approx(7 / 3) and summary["n_seeds"] == 1
    assert summary["sigma"] == pytest.approx(lenth["pse"] * math.sqrt(2))
    assert summary["best_rule"] == "per-comparison" and "per-comparison" in report
    assert len(summary["effects"]) == 7 and "moe x fgram x tokenizer" in report
    assert summary["metric"] == "final_val_bpb"
    assert summary["lowest_variant"] == df.sort_values("final_val_bpb").variant.iloc[0]
    if summary["best_variant"]:
        assert f"**Best variant: `{summary['best_variant']}`**" in report
    else:
        assert "**No single best variant**" in report
    for name in ("ablation.png", "compute.png"):
        assert (root / "experiments" / name).stat().st_size > 1000


def test_mlflow_store_holds_eight_cell_runs_and_one_ablation_summary(repro):
    root, _ = repro
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    every = mlflow.search_runs(experiment_names=["nanomoe-ablation"])
    runs = every[every["tags.kind"] == "cell"]
    assert len(runs) == 8
    assert (runs.status == "FINISHED").all()
    assert runs["metrics.val_loss"].notna().all()
    assert runs["metrics.val_bpb"].notna().all()
    assert runs["metrics.final_val_bpb"].notna().all()
    assert runs["metrics.final_val_loss"].notna().all()
    assert runs["metrics.best_val_loss"].notna().all()
    table = pd.read_csv(root / "experiments/ablation.csv")
    names = {f"{r.variant} s{r.seed}" for r in table.itertuples()}  # the seed in every name
    assert set(runs["tags.mlflow.runName"]) == names
    assert set(runs["params.tokenizer"]) == {"char", "bpe"}
    client = mlflow.MlflowClient()
    for metric in ("val_loss", "val_bpb"):
        history = client.get_metric_history(runs.run_id.iloc[0], metric)
        assert [m.step for m in history] == [0, 6, 12]
    artifacts = {a.path for a in client.list_artifacts(runs.run_id.iloc[0])}
    assert {"metrics.json", "sample.txt", "curve.png"} <= artifacts

    (summary_id,) = every[every["tags.kind"] == "ablation"].run_id
    summary = client.get_run(summary_id)
    assert summary.info.status == "FINISHED"
    assert set(summary.data.tags["cell_run_ids"].split(",")) == set(runs.run_id)
    effects = json.loads((root / "experiments/summary.json").read_text())["effects"]
    assert (
        summary.data.metrics["effect.moe_x_fgram_x_tokenizer"]
        == effects["moe x fgram x tokenizer"]["delta"]
    )
    assert summary.data.metrics["margin.tokenizer"] == effects["tokenizer (main)"]["margin"]
    files = {a.path for a in client.list_artifacts(summary_id)}
    assert {"report.md", "ablation.png", "compute.png", "summary.json", "cells.json"} <= files
    # run ids stay out of metrics.json, which a resume must leave identical
    for path in (root / "experiments/ablation").glob("*/metrics.json"):
        assert not set(runs.run_id) & set(re.findall(r"[0-9a-f]{32}", path.read_text()))


def test_the_summary_run_is_the_parent_of_the_eight_cells_each_a_logged_model(repro):
    """``mlflow ui`` shows the ablation as one run to expand, and its Models tab the eight
    cells' models with their final_val_bpb. Kills: the report not setting
    mlflow.parentRunId; the model logged before the final metrics."""
    root, _ = repro
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nanomoe-ablation").experiment_id
    (summary,) = client.search_runs([exp], "tags.kind = 'ablation'")
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{summary.info.run_id}'")
    table = pd.read_csv(root / "experiments/ablation.csv")
    assert len(children) == 8 and {r.data.tags["kind"] for r in children} == {"cell"}
    models = client.search_logged_models([exp])
    assert len(models) == 8 and {m.source_run_id for m in models} == {
        r.info.run_id for r in children
    }
    bpb = {m.source_run_id: {x.key: x.value for x in m.metrics}["final_val_bpb"] for m in models}
    runs = {r.info.run_id: r.data.tags["variant"] for r in children}
    assert sorted(bpb[i] for i in runs) == sorted(table.final_val_bpb)


def test_the_report_registers_each_variant_once_and_again_registers_nothing(repro):
    """Eight versions, one per variant, ``best`` on summary.json's best variant (or the
    tie's aliases); ``dvc repro -f -s report`` makes a second summary run that adds no version
    and leaves the cells' parent, tagging them with both. Kills: registering per report run;
    a later ablation stealing the parent."""
    root, _ = repro
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    before = client.search_model_versions("name = 'nanomoe-ablation'")
    summary = json.loads((root / "experiments/summary.json").read_text())
    assert len(before) == 8 and len({v.tags["variant"] for v in before}) == 8
    model = client.get_registered_model("nanomoe-ablation")
    aliases = {k: str(v) for k, v in model.aliases.items()}
    by_variant = {v.tags["variant"]: str(v.version) for v in before}
    if summary["best_variant"]:
        assert aliases == {"best": by_variant[summary["best_variant"]]}
    else:
        tied = summary["tied_with_lowest"]
        assert aliases == {f"tied-best-{i}": by_variant[v] for i, v in enumerate(tied, 1)}
    again = run_module(root, "dvc", "repro", "--force", "--single-item", "report")
    assert again.returncode == 0, again.stderr[-2000:]
    after = client.search_model_versions("name = 'nanomoe-ablation'")
    assert sorted(v.version for v in after) == sorted(v.version for v in before)
    exp = client.get_experiment_by_name("nanomoe-ablation").experiment_id
    first, second = sorted(
        client.search_runs([exp], "tags.kind = 'ablation'"), key=lambda r: r.info.start_time
    )
    for cell in client.search_runs([exp], "tags.kind = 'cell'"):
        assert cell.data.tags["mlflow.parentRunId"] == first.info.run_id
        assert cell.data.tags["ablations"] == f"{first.info.run_id},{second.info.run_id}"


@pytest.mark.parametrize("bytecode", [True, False], ids=["bytecode", "no-bytecode"])
def test_second_repro_trains_nothing(repro, bytecode):
    """With bytecode written (a user's machine: the first repro wrote it too) and not.
    Kills: __pycache__/ and *.pyc taken out of .dvcignore."""
    root, _ = repro
    again = run_module(root, "dvc", "repro", env=env_for(root, bytecode=bytecode))
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout


@pytest.mark.parametrize("bytecode", [True, False], ids=["bytecode", "no-bytecode"])
def test_changing_fgram_params_touches_only_fgram_cells(repro, bytecode):
    root, _ = repro
    params_path = root / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["fgram"]["max_n"] = 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    try:
        status = run_module(root, "dvc", "status", env=env_for(root, bytecode=bytecode))
    finally:
        params_path.write_text(original)
    changed = {
        line.strip().rstrip(":") for line in status.stdout.splitlines() if line.endswith(":")
    }
    changed = {c for c in changed if c.startswith(("train", "report", "mine"))}
    assert changed == {
        "train_fgram@false-false-true-char-1337",
        "train_fgram_tokenizer@false-false-true-bpe-1337",
        "train_moe_fgram@false-true-true-char-1337",
        "train_moe_fgram_tokenizer@false-true-true-bpe-1337",
    }, status.stdout


def test_holding_a_factor_retrains_no_cell_and_reports_the_smaller_design(repro, tmp_path):
    """``grid.tokenizer: [bpe]`` then ``python -m pipeline.grid``: ``dvc repro`` trains
    nothing (grid is no dep of a cell) and the report analyses the 2^2 design of moe and
    fgram. Kills: grid made a params dep of the train stages, or the report still analysing
    the tokenizer."""
    root = tmp_path / "held"
    shutil.copytree(repro[0], root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["grid"]["tokenizer"] = ["bpe"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    assert run_module(root, "pipeline.grid").returncode == 0
    again = dvc(root, "repro")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Running stage 'train" not in again.stdout
    assert "Running stage 'report'" in again.stdout
    summary = json.loads((root / "experiments" / "summary.json").read_text())
    assert summary["factors"] == ["moe", "fgram"]
    assert sorted(summary["effects"]) == ["fgram (main)", "moe (main)", "moe x fgram"]
    assert len(pd.read_csv(root / "experiments" / "ablation.csv")) == 4


@pytest.mark.parametrize("tok", ["char", "bpe"])
def test_sample_cli_continues_a_pipeline_checkpoint(repro, tok):
    """A bpe cell takes any text as its prompt (here characters outside the corpus)."""
    root, _ = repro
    cells = (root / "experiments" / "ablation").glob(f"*moe-true_fgram-true_tokenizer-{tok}*")
    ckpt = next(cells) / "ckpt.pt"
    prompt = "café" if tok == "char" else "日本 café"
    out = run_module(
        root, "nanomoe.sample", "--checkpoint", str(ckpt), "--prompt", prompt, "--tokens", "10"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(prompt)


def test_char_cells_bpb_is_nats_per_char_over_ln2_times_chars_per_byte(repro):
    """One text file, char cells: each validation target is one character, so bits per byte
    = nats/char / ln 2 x chars/bytes of the targets' text (the validation text but its
    first character, which no window predicts; not ASCII here, so the factor is not 1).
    Mutation killed: token_bytes of 1 per character (counting characters, not bytes)."""
    root, _ = repro
    df = pd.read_csv(root / "experiments" / "ablation.csv")
    prepared = root / "data/char/prepared"
    meta = json.loads((prepared / "meta.json").read_text(encoding="utf-8"))
    ids = np.fromfile(prepared / "val.bin", dtype=meta["dtype"])
    targets = "".join(meta["chars"][i] for i in ids[1:])
    assert len(targets.encode("utf-8")) > len(targets) == meta["n_val"] - 1
    char = df[df.tokenizer == "char"]
    expected = char.final_val_loss / math.log(2) * len(targets) / len(targets.encode("utf-8"))
    assert char.final_val_bpb.to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-9)
    bpe = json.loads((root / "data/bpe/prepared/meta.json").read_text(encoding="utf-8"))
    assert bpe["text"] == meta["text"]  # the same validation text, cut before encoding
    assert bpe["n_val"] < meta["n_val"] and bpe["vocab_size"] == 320


# --- dvc exp run --temp: the experiment runs in its copy, its runs land in our store -----


# Loaded (via PYTHONPATH) by every Python process the test starts: at exit, a pipeline stage
# appends where it ran, what DVC told it and which MLflow store it used.
PROBE = """\
import atexit, json, os, sys


def _record():
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or not spec.name.startswith("pipeline."):
        return
    mlf = sys.modules.get("mlflow")
    pkg = sys.modules.get("pipeline")
    row = {
        "module": spec.name,
        "cwd": os.getcwd(),
        "pipeline_file": getattr(pkg, "__file__", None),
        "env": {k: v for k, v in os.environ.items() if k.startswith("DVC_")},
        "tracking_uri": mlf.get_tracking_uri() if mlf is not None else None,
        "mlflow_db_in_cwd": os.path.exists("mlflow.db"),
    }
    with open(os.environ["NANOMOE_PROBE_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\\n")


atexit.register(_record)
"""

GITIGNORE = "__pycache__/\n/mlflow.db\n/mlruns/\n/mlartifacts/\n"


def test_dvc_exp_run_temp_uses_the_experiment_copy_and_logs_to_the_parent_store(repro, tmp_path):
    """Late in this module: it commits the project and adds runs to its store."""
    root, first = repro
    assert first.returncode == 0, tail(first)
    (root / ".gitignore").write_text(GITIGNORE)
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    log = tmp_path / "probe.jsonl"
    env = env_for(root)
    env["PYTHONPATH"] = f"{probe}{os.pathsep}{env['PYTHONPATH']}"
    env["NANOMOE_PROBE_LOG"] = str(log)

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return run_module(root, "dvc", *args, env=env)

    git(root, "config", "user.name", "test")
    git(root, "config", "user.email", "test@example.com")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    t_base = time.monotonic()

    ablation = root / "experiments" / "ablation"
    params_before = (root / "params.yaml").read_text()
    metrics_before = {p.parent.name: p.read_bytes() for p in ablation.glob("*/metrics.json")}
    assert len(metrics_before) == 8
    log.write_text("")

    exp = dvc("exp", "run", "--temp", "-S", "moe.top_k=2")
    t_exp = time.monotonic()
    print(f"exp run {t_exp - t_base:.0f} s\n{exp.stdout}")
    ran = [json.loads(line) for line in log.read_text().splitlines()]
    where = "\n".join(f"{r['module']} cwd={r['cwd']} uri={r['tracking_uri']}" for r in ran)

    # (b) The parent's files are untouched: the experiment ran in its own copy.
    metrics_after = {p.parent.name: p.read_bytes() for p in ablation.glob("*/metrics.json")}
    changed = sorted(k for k in metrics_before if metrics_after.get(k) != metrics_before[k])
    assert not changed, (
        f"dvc exp run --temp rewrote the parent's metrics.json of {changed}\n"
        f"stages ran:\n{where}\n{tail(exp)}"
    )
    assert set(metrics_after) == set(metrics_before), "new run dirs in the parent"
    assert (root / "params.yaml").read_text() == params_before
    assert exp.returncode == 0, tail(exp)

    # Only what moe.* feeds re-ran (the 4 MoE cells and the report), each in the temp copy.
    seeds = yaml.safe_load(params_before)["seeds"]
    moe_cells = [
        f"{stage}{'_tokenizer' * (tok == 'bpe')}@false-true-{fgram}-{tok}-{seed}"
        for stage, fgram in (("train_moe", "false"), ("train_moe_fgram", "true"))
        for tok in ("char", "bpe")
        for seed in seeds
    ]
    reran = re.findall(r"Running stage '([^']+)'", exp.stdout)
    assert sorted(reran) == sorted([*moe_cells, "report"]), exp.stdout
    tmp_exps = root / ".dvc" / "tmp" / "exps"
    assert len(ran) == len(reran), where
    for r in ran:
        assert Path(r["cwd"]).is_relative_to(tmp_exps), where
        assert Path(r["pipeline_file"]).is_relative_to(Path(r["cwd"])), r
        assert Path(r["env"]["DVC_ROOT"]).resolve() == root.resolve(), r
        assert not r["mlflow_db_in_cwd"], f"{r['module']} made an mlflow.db in the temp copy"
    assert not list((root / ".dvc" / "tmp").rglob("mlflow.db"))

    # (a) The override took effect in the experiment, which DVC committed with its results.
    refs = git(root, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    assert len(refs) == 1, refs
    exp_params = yaml.safe_load(git(root, "show", f"{refs[0]}:params.yaml"))
    assert exp_params["moe"]["top_k"] == 2
    for cell, before in metrics_before.items():
        after = git(root, "show", f"{refs[0]}:experiments/ablation/{cell}/metrics.json")
        assert (after.encode() != before) == ("moe-true" in cell), cell

    # (c) Its 4 runs landed in the parent's MLflow store, tagged with the experiment's name.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nanomoe-ablation")
    every = client.search_runs([experiment.experiment_id])
    runs = [r for r in every if r.data.tags.get("kind") == "cell"]
    assert len(runs) == 8 * len(seeds) + len(moe_cells), [r.info.run_name for r in every]
    # one ablation summary per report: the parent's repro, its forced report (the registry
    # test's), and the experiment's, comparable
    summaries = [r for r in every if r.data.tags.get("kind") == "ablation"]
    assert len(summaries) == 3 and len(every) == len(runs) + 3
    assert [("dvc_exp_name" in r.data.tags) for r in summaries].count(True) == 1
    # the experiment's summary is the parent of the cells it trained, and of no other
    (exp_summary,) = [r for r in summaries if "dvc_exp_name" in r.data.tags]
    adopted = [r for r in runs if r.data.tags["mlflow.parentRunId"] == exp_summary.info.run_id]
    assert len(adopted) == len(moe_cells)
    assert all("effect.moe" in r.data.metrics for r in summaries)
    new = [r for r in runs if "dvc_exp_name" in r.data.tags]
    assert len(new) == len(moe_cells), [r.data.tags for r in runs]
    assert {r.data.params["top_k"] for r in new} == {"2"}
    assert {r.data.params["moe"] for r in new} == {"True"}
    assert {r.info.status for r in new} == {"FINISHED"}
    assert len({r.data.tags["dvc_exp_name"] for r in new}) == 1


# --- a teammate: dvc push here, git clone + dvc pull there, and repro trains nothing -----


def _outputs(root: Path) -> dict[str, bytes]:
    """Every file of the pipeline's data/ and experiments/: DVC's outputs and git's."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for top in ("data", "experiments")
        for p in sorted((root / top).rglob("*"))
        if p.is_file()
    }


def _cached_outs(root: Path, rev: str) -> dict[str, str]:
    """path -> md5 of the outputs in ``rev``'s dvc.lock that DVC caches (git holds the rest)."""
    lock = yaml.safe_load(git(root, "show", f"{rev}:dvc.lock"))
    in_git = set(git(root, "ls-tree", "-r", "--name-only", rev).split())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] not in in_git
    }


def test_a_teammate_pulls_from_a_dvc_remote_and_repro_trains_nothing(repro, tmp_path):
    """Last in this module: it commits the project and gives it a DVC and a Git remote."""
    root, first = repro
    assert first.returncode == 0, tail(first)
    git(root, "config", "user.name", "test")
    git(root, "config", "user.email", "test@example.com")
    exps = [  # refs/exps/<sha[:2]>/<sha[2:]>/<name>, not refs/exps/exec/...
        ref.rsplit("/", 1)[1]
        for ref in git(root, "for-each-ref", "--format=%(refname)", "refs/exps").split()
        if len(ref.split("/")) == 5
    ]
    if not exps:  # the exp test did not run first: an experiment of the tree as it is
        (root / ".gitignore").write_text(GITIGNORE)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "base")
        saved = dvc(root, "exp", "save", "-n", "shared")
        assert saved.returncode == 0, tail(saved)
        exps = ["shared"]
    (exp,) = exps
    exp_ref = git(root, "for-each-ref", "--format=%(refname)", f"refs/exps/*/*/{exp}").strip()

    # The team's two shared places: a DVC remote for the cache, a Git remote for the code.
    remote, origin = tmp_path / "remote", tmp_path / "team.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(origin))
    git(root, "remote", "add", "origin", str(origin))
    added = dvc(root, "remote", "add", "-d", "team", str(remote))
    assert added.returncode == 0, tail(added)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "share")  # .dvc/config (the remote) goes with the code
    git(root, "push", "-q", "origin", "HEAD:main")
    pushed = dvc(root, "push")
    assert pushed.returncode == 0, tail(pushed)

    # The teammate: clone the code, pull the data and checkpoints, repro.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))

    def dvc2(*args: str) -> subprocess.CompletedProcess:
        return run_module(clone, "dvc", *args)

    pulled = dvc2("pull")
    assert pulled.returncode == 0, tail(pulled)
    theirs, ours = _outputs(clone), _outputs(root)
    assert sum(name.endswith("ckpt.pt") for name in theirs) == 8
    assert sorted(theirs) == sorted(ours)
    assert [n for n in ours if theirs[n] != ours[n]] == []

    again = dvc2("repro")
    assert again.returncode == 0, tail(again)
    stages = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert "Running stage" not in again.stdout, tail(again)
    skipped = re.findall(r"Stage '([^']+)' didn't change, skipping", again.stdout)
    assert sorted(skipped) == sorted(stages), tail(again)
    assert _outputs(clone) == ours
    assert (clone / "dvc.lock").read_bytes() == (root / "dvc.lock").read_bytes()
    assert not (clone / "mlflow.db").exists(), "a stage ran and logged to MLflow"
    assert git(clone, "status", "--porcelain") == ""

    # The experiment: its commit to the Git remote, its cached outputs to the DVC remote.
    # `dvc exp push/pull` read the DVC remote from the experiment's own commit, which
    # predates the remote here (they then move no data and still exit 0): the same remote in
    # each side's .dvc/config.local, which every revision sees, fixes it (what
    # `dvc remote add --local -d team <url>` writes, without a 2 s dvc start).
    for side in (root, clone):
        (side / ".dvc" / "config.local").write_text(
            f"[core]\n    remote = team\n['remote \"team\"']\n    url = {remote}\n"
        )
    exp_pushed = dvc(root, "exp", "push", "origin", exp)
    assert exp_pushed.returncode == 0, tail(exp_pushed)
    exp_pulled = dvc2("exp", "pull", "origin", exp)
    assert exp_pulled.returncode == 0, tail(exp_pulled)
    assert git(clone, "rev-parse", exp_ref) == git(root, "rev-parse", exp_ref)
    cache = clone / ".dvc" / "cache" / "files" / "md5"
    outs = _cached_outs(clone, exp_ref)
    assert sum(p.endswith("ckpt.pt") for p in outs) == 8
    missing = [p for p, md5 in outs.items() if not (cache / md5[:2] / md5[2:]).is_file()]
    assert not missing, tail(exp_pushed) + tail(exp_pulled)
