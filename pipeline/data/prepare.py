"""Stage ``prepare``: the corpus in data/raw/ to one tokenizer's token files, streamed.

    python -m pipeline.prepare --tokenizer bpe

Pass 1 reads and checks every shard and routes each document (pipeline/data/stream.py); nothing
is written unless all of it passes. Pass 2 encodes each kept document with the tokenizer of
data/<tokenizer>/tokenizer.json (the tokenizer stage's) and writes its ids to its split's
file. Torch is never imported.

One text file keeps nanoGPT's cut and has no end-of-document token; TinyShakespeare's char
files are the ones an in-memory split writes (``nanomoe.data.prepare``). Any other corpus is
documents, each followed by the end-of-document token (meta.json's ``eod``).

Writes data/<tokenizer>/prepared/{train.bin, val.bin, meta.json}, each atomically, meta.json
last. meta.json names the tokenizer file's sha256, so a cell never reads ids with another
tokenizer, and counts each split's characters and UTF-8 bytes, for bits per byte.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nanomoe.atomic import atomic_write_text, atomic_writer
from nanomoe.bpe import safe_cut
from nanomoe.tokenizer import KINDS, Tokenizer, read_tokenizer
from pipeline.data.split import Splitter
from pipeline.data.stream import END, Scan, cut, scan, shard_files, split_text
from pipeline.layout import Layout
from pipeline.project import Project
from pipeline.sources import DataParams
from pipeline.stage import StageError, run_stage


def check_documents(split: Splitter, layout: Layout) -> None:
    if split.tokens["val"] >= 2 and split.tokens["train"] >= 2:
        return
    if split.docs["left out"] and not split.docs["val"]:
        raise StageError(
            "params.yaml: data.max_val_tokens: smaller than the first validation document; "
            "raise it, or set it to null"
        )
    raise StageError(
        f"{layout.relative(layout.raw)}: the hash split puts {split.docs['train']} documents in "
        f"train and {split.docs['val']} in val, and each needs 2 tokens or more; add "
        "documents, or change data.val_fraction"
    )


class SplitWriter:
    """One split's token file: text in, ids out. A BPE text is encoded up to its last safe
    cut (``nanomoe.bpe.safe_cut``) and the rest held for the next piece, so a document read
    in pieces gets the ids it would get whole."""

    def __init__(self, tok: Tokenizer, file, documents: bool) -> None:
        self.tok, self.file, self.carry = tok, file, ""
        self.end = np.array([tok.eod_id], dtype=tok.dtype).tobytes() if documents else b""
        self.tokens = self.chars = self.bytes = 0

    def write(self, piece: str | None) -> None:
        if piece is END:
            self._encode(self.carry)
            self.carry = ""
            self.file.write(self.end)
            self.tokens += bool(self.end)
            return
        self.chars += len(piece)
        self.bytes += len(piece.encode("utf-8"))
        text = self.carry + piece
        at = safe_cut(text) if self.tok.kind == "bpe" else len(text)
        self._encode(text[:at])
        self.carry = text[at:]

    def _encode(self, text: str) -> None:
        if text:
            ids = self.tok.encode_array(text)
            self.file.write(ids.tobytes())
            self.tokens += len(ids)


def tokenizer_of(layout: Layout, kind: str) -> tuple[Tokenizer, str]:
    """The tokenizer stage's tokenizer of ``kind``, and its file's sha256."""
    path = layout.require(layout.tokenizer(kind))
    tok, sha = read_tokenizer(path, f"run dvc repro tokenizer@{kind}")
    if tok.kind != kind:
        bad = f"holds a {tok.kind} tokenizer, not {kind}; run dvc repro tokenizer@{kind}"
        raise StageError(f"{layout.relative(path)}: {bad}")
    return tok, sha


def _check_fits(tok: Tokenizer, s: Scan, path: Path) -> None:
    """A char tokenizer must be this corpus's: its characters, and an end token iff documents."""
    if tok.kind == "char" and (tok.chars != s.chars or tok.eod != s.documents):
        raise StageError(
            f"{path}: was not learned from this corpus (its characters or its end token "
            "differ); run dvc repro tokenizer@char"
        )


def encode(files: list[Path], layout: Layout, data: DataParams, s: Scan, tok, out: Path) -> dict:
    """Pass 2: write train.bin and val.bin; return what meta.json says of them."""
    router = Splitter(data.val_fraction, data.max_val_tokens)
    # val.bin's writer outside train.bin's: train.bin is replaced first, and if that fails
    # (a folder in the way) val.bin is left as it was too
    with atomic_writer(out / "val.bin") as val, atomic_writer(out / "train.bin") as train:
        sink = {
            "train": SplitWriter(tok, train, s.documents),
            "val": SplitWriter(tok, val, s.documents),
        }
        for split, piece in split_text(files, layout, data, s, router, "prepare"):
            sink[split].write(piece)
    meta = {"dtype": np.dtype(tok.dtype).name}
    meta |= {f"n_{k}": w.tokens for k, w in sink.items()}
    meta["text"] = {k: {"chars": w.chars, "bytes": w.bytes} for k, w in sink.items()}
    if s.documents:
        meta["documents"] = router.docs
    return meta


def prepare(layout: Layout, data: DataParams, kind: str) -> tuple[dict, Scan]:
    tok, sha = tokenizer_of(layout, kind)
    raw = layout.require(layout.raw)
    files = shard_files(raw, layout)
    s = scan(files, layout, data, "prepare")
    if s.split is not None:
        check_documents(s.split, layout)
    else:
        try:
            cut(s.n_chars, data)
        except ValueError as err:
            raise StageError(f"{layout.relative(files[0])}: {err}") from None
    _check_fits(tok, s, layout.relative(layout.tokenizer(kind)))
    out = layout.prepared(kind)
    meta = {"tokenizer": kind, "tokenizer_sha256": sha, "vocab_size": tok.vocab_size}
    if kind == "char":
        meta["chars"] = tok.chars
    if s.documents:
        meta["eod"] = tok.eod_id
    meta |= encode(files, layout, data, s, tok, out)
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False))
    return meta, s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__)
    ap.add_argument("--tokenizer", choices=KINDS, required=True, help="whose token files")
    a = ap.parse_args(argv)
    project = Project.load()
    meta, s = prepare(project.layout, project.params.data, a.tokenizer)
    dest = project.layout.relative(project.layout.prepared(a.tokenizer))
    text = meta["text"]
    print(
        f"{a.tokenizer}: vocab {meta['vocab_size']} tokens; train {meta['n_train']:,} tokens "
        f"({text['train']['bytes'] / meta['n_train']:.2f} bytes each), val {meta['n_val']:,} "
        f"tokens -> {dest}/"
    )
    if s.split is not None:
        d, f = s.split.docs, project.params.data.val_fraction
        print(
            f"{d['train']:,} documents train, {d['val']:,} val ({d['left out']:,} left out by "
            f"data.max_val_tokens); val holds {s.split.val_share:.2%} of the bytes "
            f"(data.val_fraction {f:.0%}, expected within +-{2 * s.split.share_sd:.2%})"
        )
    return 0


if __name__ == "__main__":
    run_stage(main)
