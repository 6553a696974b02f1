"""Stage ``mine_fgrams``: mine frequent n-grams from the *train* split only.

Writes data/fgrams.json (up to ``fgram.mine_max_n``, so tuning can reuse it for every length
it tries) and data/fgram_metrics.json (how many per n, and the share of train positions the
longest match covers at each ``max_n``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nanomoe.data import load_meta, load_split
from nanomoe.fgram import FgramMatcher, mine_fgrams, save_fgrams
from nanomoe.io import atomic_write_text
from pipeline.cli import StageError, run
from pipeline.params import load_params, repo_root
from pipeline.paths import FGRAM_METRICS, FGRAMS, require_prepared


def coverage(ids: np.ndarray, fgrams, vocab_size: int, max_n: int) -> float:
    """Share of positions where some mined n-gram (n <= max_n) ends."""
    matcher = FgramMatcher([g.ids for g in fgrams if g.n <= max_n], vocab_size, max_n)
    x = torch.from_numpy(np.asarray(ids).astype(np.int64))[None]
    return float((matcher(x) > 0).float().mean())


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m pipeline.mine_fgrams", description=__doc__).parse_args(
        argv
    )
    p = load_params()
    root = repo_root()
    prepared = require_prepared(root)
    meta = load_meta(prepared)
    train = np.asarray(load_split(prepared, "train"))
    f = p.fgram
    t0 = time.perf_counter()
    try:
        fgrams = mine_fgrams(train, meta["vocab_size"], f.mine_max_n, f.min_count, f.max_fgrams)
    except ValueError as err:
        raise StageError(f"params.yaml: fgram: {err}") from None
    seconds = time.perf_counter() - t0
    save_fgrams(
        root / FGRAMS,
        fgrams,
        meta["chars"],
        {"mine_max_n": f.mine_max_n, "min_count": f.min_count, "max_fgrams": f.max_fgrams},
    )
    per_n = {str(n): sum(g.n == n for g in fgrams) for n in range(2, f.mine_max_n + 1)}
    lengths = range(2, f.mine_max_n + 1)
    cover = {str(n): round(coverage(train, fgrams, meta["vocab_size"], n), 4) for n in lengths}
    metrics = {"count": len(fgrams), "count_per_n": per_n, "coverage_per_max_n": cover}
    atomic_write_text(root / FGRAM_METRICS, json.dumps(metrics, indent=2))
    print(f"mined {len(fgrams)} F-grams in {seconds:.1f}s -> {FGRAMS}; per n {per_n}")
    print(f"share of train positions covered, by max_n: {cover}")
    return 0


if __name__ == "__main__":
    run(main)
