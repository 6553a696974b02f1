"""Stage ``prepare``: character vocabulary from the corpus, 90/10 split, binary token files.

Writes data/prepared/{train.bin, val.bin, meta.json}.
"""

from __future__ import annotations

import argparse

from nanomoe.data import prepare
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.stage import StageError, run_stage


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__).parse_args(argv)
    layout = Layout.load()
    p = load_params(layout.root / "params.yaml")
    raw = layout.require(layout.raw)
    try:
        text = raw.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fix = "re-run the download stage (dvc repro download)"
        raise StageError(f"{layout.relative(raw)}: not UTF-8 text; {fix}") from None
    try:
        meta = prepare(text, layout.prepared, p.data.val_fraction)
    except ValueError as err:
        raise StageError(f"{layout.relative(raw)}: {err}") from None
    print(
        f"vocab {meta['vocab_size']} characters; train {meta['n_train']:,} tokens, "
        f"val {meta['n_val']:,} tokens -> {layout.relative(layout.prepared)}/"
    )
    return 0


if __name__ == "__main__":
    run_stage(main)
