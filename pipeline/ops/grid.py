"""Write dvc.yaml's train stages from ``grid:`` in params.yaml and the switch registry.

    python -m pipeline.grid            # rewrite the train stages in dvc.yaml
    python -m pipeline.grid --check    # exit 2 when dvc.yaml's train stages are stale
    python -m pipeline.grid --targets  # every cell's stage target: dvc repro $(...)

Each cell depends on exactly what it uses, so the grid is split into one train stage per
combination of levels of the switches that need data or settings at their high level (F-grams
need data/fgrams.json and fgram.*, MoE needs moe.*); each stage is a DVC matrix over the other
switches and the seeds. A fractional design (``grid.fraction``) is written cell by cell: every
factor splits, and a stage is written only for the cells the fraction trains (a fold-over's
first half keeps its stages, so its dvc.lock entries stand when the second half is added).
Stage names (``train_moe@true-true-false-1337``) and cell folders
(``rope-true_moe-true_fgram-false_seed-1337``) spell every switch, in registry order.

The values are written out rather than read by DVC from ``${grid...}``: DVC would name the
stages ``train@False-...`` (orphaning dvc.lock), make no stage for an empty list, and cannot
intersect a stage's own level with the grid's. ``grid`` is no params dep of the train stages,
so editing it retrains no unchanged cell; ``seeds`` stays ``${seeds}``.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from nanomoe.atomic import atomic_write_text
from nanomoe.switches import SWITCHES, Switch, cells, data_files
from pipeline.design.fraction import Design
from pipeline.ops.code_deps import with_code_deps
from pipeline.params.load import coded
from pipeline.project import Project
from pipeline.stage import StageError, run_stage

BEGIN = "  # --- the grid's stages: written by `python -m pipeline.grid`; do not edit by hand ---"
END = "  # --- end of the stages written by `python -m pipeline.grid` ---"
TOKENIZERS = "tokenizer"  # the switch whose levels each have their own data stages
DATA_STAGES = {  # their code deps are computed from their imports, as every stage's
    "tokenizer": {
        "what": "each tokenizer, learned from the train split",
        "deps": ["data/raw"],
        "params": [
            "data.val_fraction",
            "data.text_field",
            "tokenizer.vocab_size",
            "tokenizer.train_max_chars",
        ],
        "outs": ["data/${item.tokenizer}/tokenizer.json"],
    },
    "prepare": {
        "what": "the splits, encoded with each tokenizer",
        "deps": ["data/raw", "data/${item.tokenizer}/tokenizer.json"],
        "params": ["data.val_fraction", "data.text_field", "data.max_val_tokens"],
        "outs": ["data/${item.tokenizer}/prepared"],
    },
    "mine_fgrams": {
        "what": "F-grams over each tokenizer's train ids",
        "deps": ["data/${item.tokenizer}/prepared"],
        "params": [
            f"fgram.{k}" for k in ("mine_max_n", "min_count", "max_fgrams", "mine_max_tokens")
        ],
        "outs": ["data/${item.tokenizer}/fgrams.json"],
        "metrics": ["data/${item.tokenizer}/fgram_metrics.json"],
    },
}
PARAMS = ["model", "train", "sample"]  # every cell's; each switch adds its own at its high level
# A cell's plain outs, in DVC's cache. A plain out with ``cache: false`` turns DVC's run cache
# off for its stage; metrics and plots with ``cache: false`` (in git: what people read) do not.
CACHED = ("ckpt.pt", "sample.txt", "run.json")
FOLDER = "experiments/ablation/{}_seed-${{item.seed}}"


def _splits(switch: Switch, design: Design | None = None) -> bool:
    """Whether the switch's high level needs its own stages: it has data or settings, or
    it is a factor of a fractional design (whose stages hold one cell each)."""
    return bool(switch.data or switch.params) or (
        design is not None and design.fractional and switch.name in design.factors
    )


def data_stages(tokenizers: list[str]) -> list[str]:
    """The lines of the data stages: each a DVC matrix over ``tokenizers``."""
    lines = []
    for name, stage in DATA_STAGES.items():
        lines += ["", f"  {name}:  # {stage['what']}", "    matrix:"]
        lines += [f"      tokenizer: [{', '.join(tokenizers)}]"]
        lines += [
            f"    cmd: python -m pipeline.{name} --tokenizer ${{item.tokenizer}}",
            "    deps:",
        ]
        lines += [f"      - {d}" for d in stage["deps"]]
        lines += ["    params:", *(f"      - {p}" for p in stage["params"]), "    outs:"]
        lines += [f"      - {o}" for o in stage["outs"]]
        for m in stage.get("metrics", []):
            lines += ["    metrics:", f"      - {m}:", "          cache: false"]
    return lines


def train_stages(grid: dict[str, list], design: Design | None = None) -> str:
    """The text of every stage of ``grid`` (switch -> its levels, low first): the data
    stages of each tokenizer, then the train stages of the cells ``design`` trains."""
    split = [s for s in SWITCHES if _splits(s, design)]
    folder = FOLDER.format("_".join(f"{s.name}-${{item.{s.name}}}" for s in SWITCHES))
    flags = [f"--{s.name} ${{item.{s.name}}}" for s in SWITCHES]  # three to a line
    lines = [BEGIN, *data_stages(grid[TOKENIZERS])]
    for fixed in itertools.product(*(grid[s.name] for s in split)):
        at = dict(zip((s.name for s in split), fixed, strict=True))
        if design is not None and design.fractional:
            if not design.keeps(coded({f: at[f] for f in design.factors})):
                continue
        high = [s for s in split if at[s.name] == s.high]
        name = stage_name(at, design)
        deps = data_files(at)
        params = [*PARAMS, *(p for s in high for p in s.params)]
        on = (
            f"{', '.join(s.name for s in high)} on"
            if high
            else "switches with data or settings off"
        )
        lines += ["", f"  {name}:  # {on}", "    matrix:"]
        for s in SWITCHES:
            levels = [at[s.name]] if s.name in at else grid[s.name]
            lines.append(f"      {s.name}: [{', '.join(s.spell(v) for v in levels)}]")
        lines += ["      seed: ${seeds}", "    cmd: >-", "      python -m pipeline.train"]
        lines += [f"      {' '.join(flags[i : i + 3])}" for i in range(0, len(flags), 3)]
        lines += ["      --seed ${item.seed}", "    deps:", *(f"      - {d}" for d in deps)]
        lines += ["    params:", *(f"      - {p}" for p in params), "    outs:"]
        lines += [f"      - {folder}/{out}" for out in CACHED]
        lines += ["    metrics:", f"      - {folder}/metrics.json:", "          cache: false"]
        lines += ["    plots:", f"      - {folder}/curve.csv:", "          cache: false"]
        lines += ["          x: step", "          y: val_loss"]
        lines += [f"      - {folder}/curve.png:", "          cache: false"]
    return "\n".join([*lines, "", END])


def stage_name(levels: dict, design: Design | None = None) -> str:
    """The train stage that holds the cell at ``levels``: ``train`` plus each switch with data
    or settings (and in a fraction, each factor) at its high level (``train_moe_fgram``)."""
    return "train" + "".join(
        f"_{s.name}" for s in SWITCHES if _splits(s, design) and levels[s.name] == s.high
    )


def targets(grid: dict[str, list], seeds: list[int], design: Design | None = None) -> list[str]:
    """Every cell's train stage target for ``dvc repro`` (``train_moe@true-true-false-1337``),
    the cells with the most data-or-settings switches on first: they are the slowest to train,
    so workers that take the next cell from this list finish close together."""
    return list(target_cells(grid, seeds, design))


def target_cells(
    grid: dict[str, list], seeds: list[int], design: Design | None = None
) -> dict[str, tuple[dict, int]]:
    """``targets``, each with its cell: (its switches' levels, its seed), in the same order."""
    kept = [c for c in cells(grid) if design is None or design.keeps(coded(c))]
    order = sorted(kept, key=lambda c: -len(stage_name(c).split("_")))  # data/settings first
    return {
        f"{stage_name(c, design)}@{spelled(c)}-{seed}": (c, seed) for c in order for seed in seeds
    }


def spelled(levels: dict) -> str:
    """A cell's levels as its stage's matrix key spells them: ``true-false-true-char``."""
    return "-".join(s.spell(levels[s.name]) for s in SWITCHES)


def share(items: list[str], spec: str) -> list[str]:
    """The ``I/N`` share of ``items`` (I from 0): every N-th item from the I-th."""
    try:
        i, n = (int(x) for x in spec.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise StageError(
            f"--share: {spec!r} is not I/N with 0 <= I < N; e.g. --share 0/4 "
            "(SLURM: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
        ) from None
    return items[i::n]


STALE = (
    "dvc.yaml: stale: its stages are not the ones params.yaml's grid: and the code's imports make; "
)


def require_current(
    text: str, grid: dict[str, list], root: Path, design: Design | None = None
) -> None:
    """``text`` (dvc.yaml) has the train stages of ``grid``, or one line saying what to run:
    the commands that act on the cells' targets need them current."""
    if rewrite(text, grid, root, design) != text:
        raise StageError(STALE + "run python -m pipeline.grid first")


def rewrite(text: str, grid: dict[str, list], root: Path, design: Design | None = None) -> str:
    """``text`` (dvc.yaml) with its grid's stages, between the markers, written for ``grid``,
    and every stage's code deps computed from the imports of the project at ``root``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise StageError(
            "dvc.yaml: needs one pair of the markers that enclose the train stages "
            f"({BEGIN.strip()!r} ... {END.strip()!r}); restore them from git"
        )
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return with_code_deps(head + train_stages(grid, design) + tail, root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.grid",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--check", action="store_true", help="only check; exit 2 when stale")
    ap.add_argument(
        "--targets",
        action="store_true",
        help="print every cell's train stage target, one per line, slowest first "
        "(dvc repro $(python -m pipeline.grid --targets --share 0/2)); needs dvc.yaml current",
    )
    ap.add_argument("--share", metavar="I/N", help="with --targets: every N-th from the I-th")
    a = ap.parse_args(argv)
    if a.share and not a.targets:
        ap.error("--share goes with --targets")
    project = Project.load()
    root, grid, design = project.root, project.params.grid, project.params.design
    path = root / "dvc.yaml"
    text = path.read_text(encoding="utf-8")
    if a.targets:
        require_current(text, grid, root, design)
        listed = targets(grid, project.params.seeds, design)
        print("\n".join(share(listed, a.share) if a.share else listed))
        return 0
    new = rewrite(text, grid, root, design)
    n_cells = len(project.params.cells())
    if design.fractional:
        print(
            f"design: {design.fraction} of the 2^{len(design.factors)} grid "
            f"({', '.join(design.generators)}; {design.defining_relation()})"
        )
    if new == text:
        print(f"dvc.yaml: train stages up to date ({n_cells} cells per seed)")
        return 0
    if a.check:
        raise StageError(STALE + "run python -m pipeline.grid")
    atomic_write_text(path, new)
    print(f"dvc.yaml: train stages written for {n_cells} cells per seed")
    return 0


if __name__ == "__main__":
    run_stage(main)
