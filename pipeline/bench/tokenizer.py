"""``python -m pipeline.bench.tokenizer``: the tokenizers on one text, timed.

Trains the byte-level BPE (rustbpe) on the text's train cut (its first 90%, as the pipeline
cuts one text file), then encodes the whole text with it (tiktoken) and with the character
tokenizer, and checks that both decode back to the text exactly. Prints the median of
``--repeats`` timings of each, and tokens per byte: what a BPE cell sees more of per step.

    python -m pipeline.bench.tokenizer --text ../shared/data/tinyshakespeare/input.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from nanomoe.bpe import BPETokenizer
from nanomoe.tokenizer import CharTokenizer


def timed(fn, repeats: int):
    """(the result, the median seconds) of ``fn()`` run ``repeats`` times."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench.tokenizer", description=__doc__)
    ap.add_argument("--text", type=Path, required=True, help="a UTF-8 text file")
    ap.add_argument("--vocab-size", type=int, default=1024, help="BPE ids, end token included")
    ap.add_argument("--repeats", type=int, default=5, help="timings per figure (median)")
    a = ap.parse_args(argv)
    if a.repeats < 1:
        ap.error("--repeats must be >= 1")
    try:
        text = a.text.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        ap.error(f"--text {a.text}: cannot read it as UTF-8 ({err.__class__.__name__})")
    n_bytes = len(text.encode("utf-8"))
    train = text[: len(text) - round(len(text) * 0.1)]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; text: {a.text.name}, {len(text):,} characters, "
        f"{n_bytes:,} bytes"
    )
    bpe, t_train = timed(lambda: BPETokenizer.train([train], a.vocab_size), a.repeats)
    char, t_char_fit = timed(lambda: CharTokenizer.from_text(text), a.repeats)
    rows = []
    for name, tok, fit in (("char", char, t_char_fit), ("bpe", bpe, t_train)):
        ids, t_enc = timed(lambda tok=tok: tok.encode_array(text), a.repeats)
        exact = tok.decode(ids) == text
        rows.append((name, tok.vocab_size, fit, len(text) / t_enc / 1e6, len(ids), exact))
    print(f"{'tokenizer':>9} {'vocab':>6} {'fit s':>7} {'encode Mchar/s':>15} {'tokens':>10} "
          f"{'bytes/token':>12} {'round trip':>10}")  # fmt: skip
    for name, vocab, fit, rate, n, exact in rows:
        print(
            f"{name:>9} {vocab:>6} {fit:>7.3f} {rate:>15.1f} {n:>10,} {n_bytes / n:>12.3f} "
            f"{'exact' if exact else 'DIFFERS':>10}"
        )
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
