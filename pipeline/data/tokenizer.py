"""Stage ``tokenizer``: one level of ``grid.tokenizer``, learned from the corpus.

    python -m pipeline.tokenizer --tokenizer bpe

- ``char``: the corpus's characters, sorted by code point, and an end-of-document token when
  the corpus is documents: the vocabulary the project always had. It holds every character
  of both splits (a character only validation holds must still encode); it learns nothing
  else from them.
- ``bpe``: byte-level BPE of ``tokenizer.vocab_size`` ids (nanomoe/bpe.py), learned from the
  train split only: its first ``tokenizer.train_max_chars`` characters, documents in corpus
  order (a bounded sample, so a corpus of any size trains it in seconds).

Writes data/<tokenizer>/tokenizer.json, atomically; the same corpus and settings always
write the same bytes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from nanomoe.atomic import atomic_write_text
from nanomoe.bpe import BPETokenizer, safe_cut
from nanomoe.tokenizer import KINDS, CharTokenizer, Tokenizer, tokenizer_text
from pipeline.data.split import Splitter
from pipeline.data.stream import END, scan, shard_files, split_text
from pipeline.layout import Layout
from pipeline.params.sections import TokenizerParams
from pipeline.project import Project
from pipeline.sources import DataParams
from pipeline.stage import run_stage


def train_sample(layout: Layout, data: DataParams, files, s, limit: int) -> Iterator[str]:
    """The train split's text, in corpus order, up to about ``limit`` characters: each
    document in pieces cut where BPE's pre-split cuts anyway (``safe_cut``)."""
    taken, carry = 0, ""
    router = Splitter(data.val_fraction, data.max_val_tokens)
    for split, piece in split_text(files, layout, data, s, router, "tokenizer"):
        if split != "train":
            continue
        if piece is END:
            if carry:
                yield carry
            carry = ""
            continue
        text = carry + piece[: limit - taken]
        taken += min(len(piece), limit - taken)
        at = safe_cut(text)
        if at:
            yield text[:at]
        carry = text[at:]
        if taken >= limit:
            break
    if carry:
        yield carry


def learn(layout: Layout, data: DataParams, settings: TokenizerParams, kind: str) -> Tokenizer:
    files = shard_files(layout.require(layout.raw), layout)
    s = scan(files, layout, data, "tokenizer")
    if kind == "char":
        return CharTokenizer(s.chars, eod=s.documents)
    sample = train_sample(layout, data, files, s, settings.train_max_chars)
    return BPETokenizer.train(sample, settings.vocab_size)


def write_tokenizer(
    layout: Layout, data: DataParams, settings: TokenizerParams, kind: str
) -> tuple[Tokenizer, Path]:
    """Learn the ``kind`` tokenizer and write its file, atomically."""
    tok = learn(layout, data, settings, kind)
    out = layout.tokenizer(kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, tokenizer_text(tok))
    return tok, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.tokenizer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--tokenizer", choices=KINDS, required=True, help="which tokenizer")
    a = ap.parse_args(argv)
    project = Project.load()
    t0 = time.perf_counter()
    tok, out = write_tokenizer(
        project.layout, project.params.data, project.params.tokenizer, a.tokenizer
    )
    print(
        f"{a.tokenizer}: {tok.vocab_size} tokens in {time.perf_counter() - t0:.1f}s -> "
        f"{project.layout.relative(out)}"
    )
    return 0


if __name__ == "__main__":
    run_stage(main)
