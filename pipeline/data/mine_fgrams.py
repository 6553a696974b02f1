"""Stage ``mine_fgrams``: mine frequent token n-grams of one tokenizer from the *train* split
only, over a bounded sample of it: its first ``fgram.mine_max_tokens`` tokens (all of
TinyShakespeare's). No F-gram spans an end-of-document token.

    python -m pipeline.mine_fgrams --tokenizer bpe

Writes data/<tokenizer>/fgrams.json (up to ``fgram.mine_max_n``, so tuning can reuse it for
every length it tries) and data/<tokenizer>/fgram_metrics.json (how many per n, and the share
of train positions the longest match covers at each ``max_n``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nanomoe.atomic import atomic_write_text
from nanomoe.config import MiningConfig
from nanomoe.data import load_split
from nanomoe.fgram import FgramMatcher, mine_fgrams, save_fgrams
from nanomoe.tokenizer import KINDS
from pipeline.data.tokens import read_tokens
from pipeline.params.sections import KEYS, checked
from pipeline.project import Project
from pipeline.stage import run_stage


def coverage(ids: np.ndarray, fgrams, vocab_size: int, max_n: int) -> float:
    """Share of positions where some mined n-gram (n <= max_n) ends."""
    matcher = FgramMatcher([g.ids for g in fgrams if g.n <= max_n], vocab_size, max_n)
    x = torch.from_numpy(np.asarray(ids).astype(np.int64))[None]
    return float((matcher(x) > 0).float().mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.mine_fgrams", description=__doc__)
    ap.add_argument("--tokenizer", choices=KINDS, required=True, help="whose ids to mine")
    a = ap.parse_args(argv)
    project = Project.load()
    tok, meta = read_tokens(project.layout, a.tokenizer)
    prepared = project.layout.prepared(a.tokenizer)
    m = project.params.mining
    train = np.asarray(load_split(prepared, "train")[: m.max_tokens])
    vocab, eod = meta["vocab_size"], meta.get("eod")
    t0 = time.perf_counter()
    keys = {**KEYS[MiningConfig], "fgram_max_n": KEYS[MiningConfig]["max_n"]}
    fgrams = checked(
        lambda: mine_fgrams(train, vocab, m.max_n, m.min_count, m.max_fgrams, boundary=eod), keys
    )
    seconds = time.perf_counter() - t0
    settings = {"mine_max_n": m.max_n, "min_count": m.min_count, "max_fgrams": m.max_fgrams}
    out = project.layout.fgrams(a.tokenizer)
    save_fgrams(out, fgrams, tok, settings)
    lengths = range(2, m.max_n + 1)
    per_n = {str(n): sum(g.n == n for g in fgrams) for n in lengths}
    cover = {str(n): round(coverage(train, fgrams, meta["vocab_size"], n), 4) for n in lengths}
    metrics = {"count": len(fgrams), "count_per_n": per_n, "coverage_per_max_n": cover}
    atomic_write_text(project.layout.fgram_metrics(a.tokenizer), json.dumps(metrics, indent=2))
    print(
        f"mined {len(fgrams)} F-grams from {len(train):,} train tokens in {seconds:.1f}s -> "
        f"{project.layout.relative(out)}"
    )
    print(f"per n {per_n}; share of train positions covered, by max_n: {cover}")
    return 0


if __name__ == "__main__":
    run_stage(main)
