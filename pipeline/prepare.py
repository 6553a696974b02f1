"""Stage ``prepare``: character vocabulary from the corpus, 90/10 split, binary token files.

Writes data/prepared/{train.bin, val.bin, meta.json}.
"""

from __future__ import annotations

import argparse

from nanomoe.data import prepare
from pipeline.cli import StageError, run
from pipeline.params import load_params, repo_root
from pipeline.paths import PREPARED, RAW


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__).parse_args(argv)
    p = load_params()
    raw = repo_root() / RAW
    if not raw.exists():
        raise StageError(f"{RAW} not found; run the download stage first (dvc repro download)")
    try:
        meta = prepare(raw.read_text(encoding="utf-8"), repo_root() / PREPARED, p.data.val_fraction)
    except ValueError as err:
        raise StageError(f"{RAW}: {err}") from None
    print(
        f"vocab {meta['vocab_size']} characters; train {meta['n_train']:,} tokens, "
        f"val {meta['n_val']:,} tokens -> {PREPARED}/"
    )
    return 0


if __name__ == "__main__":
    run(main)
