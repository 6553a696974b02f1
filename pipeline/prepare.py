"""Stage ``prepare``: the shards in data/raw/ to token files, streamed in two passes.

Pass 1 reads every shard, checks it (pipeline/shards.py), gathers the characters and routes
each document to its split (pipeline/split.py). Nothing is written unless all of it passes.
Pass 2 reads the shards again and writes each document's ids to its split's file. Memory
holds a chunk of text, never the corpus, and torch is never imported.

One text file keeps nanoGPT's cut: the first 1 - data.val_fraction of its characters train,
the rest validate, and there is no end-of-document token; TinyShakespeare's files are the
ones an in-memory split writes (``nanomoe.data.prepare``). Any other corpus is documents:
each is followed by the end-of-document token (meta.json's ``eod``, the id after the
characters), and whole documents go to one split or the other by a hash of their text.

Writes data/prepared/{train.bin, val.bin, meta.json}, each atomically, meta.json last.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nanomoe.atomic import atomic_write_text, atomic_writer
from nanomoe.tokenizer import CharTokenizer
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.shards import documents
from pipeline.sources import DataParams, shard_format
from pipeline.split import Splitter, doc_hash
from pipeline.stage import StageError, run_stage


@dataclass
class Scan:
    """What pass 1 learns: the characters, and how the corpus splits."""

    seen: np.ndarray = field(default_factory=lambda: np.zeros(0x110000, dtype=bool))
    n_chars: int = 0  # every character of the corpus
    split: Splitter | None = None  # documents: the router, having seen every document
    text_docs: dict[str, tuple[bytes, int, int]] = field(default_factory=dict)
    # a text shard's (digest, characters, bytes): it is one document, routed before pass 2
    # writes it, so pass 2 needs its hash before it reads it

    def see(self, piece: str) -> None:
        """Mark the piece's characters (by code point: ~10x faster than a set of str)."""
        self.seen[np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)] = True

    @property
    def chars(self) -> str:
        """Every character of the corpus, in code-point order."""
        return "".join(map(chr, np.flatnonzero(self.seen)))


def shard_files(raw: Path, layout: Layout) -> list[Path]:
    files = sorted(p for p in raw.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        fix = "run the download stage first (dvc repro download)"
        raise StageError(f"{layout.relative(raw)}: holds no shard; {fix}")
    return files


def is_one_text(files: list[Path]) -> bool:
    return len(files) == 1 and shard_format(files[0].name) == "txt"


def _pieces(files: list[Path], layout: Layout, data: DataParams, desc: str) -> Iterator:
    """(file, document's pieces) for every document of every shard, with a progress bar."""
    total = sum(f.stat().st_size for f in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None) as bar:
        for f in files:
            start = bar.n

            def progress(pos: int, start: int = start) -> None:
                bar.update(start + pos - bar.n)

            for doc in documents(f, str(layout.relative(f)), data.text_field, progress):
                yield f, doc
            bar.update(start + f.stat().st_size - bar.n)


def _utf8(piece: str, f: Path, layout: Layout) -> bytes:
    try:
        return piece.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which a JSON escape can hold
        fix = "fix the document, or drop the shard from data.url"
        raise StageError(f"{layout.relative(f)}: a document is not valid Unicode; {fix}") from None


def scan(files: list[Path], layout: Layout, data: DataParams) -> Scan:
    """Pass 1: every shard read and checked; nothing written."""
    s = Scan(split=None if is_one_text(files) else Splitter(data.val_fraction, data.max_val_tokens))
    for f, doc in _pieces(files, layout, data, "prepare: check"):
        n_chars, n_bytes, h = 0, 0, doc_hash()
        for piece in doc:
            raw = _utf8(piece, f, layout)
            s.see(piece)
            h.update(raw)
            n_chars, n_bytes = n_chars + len(piece), n_bytes + len(raw)
        s.n_chars += n_chars
        if s.split is not None and n_chars:
            s.split.route(h.digest(), n_chars + 1, n_bytes)
            if shard_format(f.name) == "txt":
                s.text_docs[f.name] = (h.digest(), n_chars, n_bytes)
    return s


def _cut(n_chars: int, data: DataParams) -> tuple[int, int]:
    """(train, val) characters of one text file: nanoGPT's contiguous cut, val capped."""
    n_val = int(round(n_chars * data.val_fraction))
    n_train = n_chars - n_val
    if n_train < 2 or n_val < 2:
        raise ValueError(f"corpus of {n_chars} characters is too small to split")
    return n_train, min(n_val, data.max_val_tokens or n_val)


def _check_documents(split: Splitter) -> None:
    if split.tokens["val"] >= 2 and split.tokens["train"] >= 2:
        return
    if split.docs["left out"] and not split.docs["val"]:
        raise StageError(
            "params.yaml: data.max_val_tokens: smaller than the first validation document; "
            "raise it, or set it to null"
        )
    raise StageError(
        f"data/raw: the hash split puts {split.docs['train']} documents in train and "
        f"{split.docs['val']} in val, and each needs 2 tokens or more; add documents, or "
        "change data.val_fraction"
    )


def encode(files: list[Path], layout: Layout, data: DataParams, s: Scan, out: Path) -> dict:
    """Pass 2: write train.bin and val.bin; return meta.json's content."""
    one = s.split is None
    tok = CharTokenizer(s.chars, eod=not one)
    n_train, n_val = _cut(s.n_chars, data) if one else (0, 0)
    eod = np.array([tok.eod_id or 0], dtype=tok.dtype).tobytes()
    router = Splitter(data.val_fraction, data.max_val_tokens)
    # val.bin's writer outside train.bin's: train.bin is replaced first, and if that fails
    # (a folder in the way) val.bin is left as it was too
    with atomic_writer(out / "val.bin") as val, atomic_writer(out / "train.bin") as train:
        sink = {"train": train, "val": val}
        written = 0  # one text file: characters so far
        for f, doc in _pieces(files, layout, data, "prepare: encode"):
            if one:
                for piece in doc:
                    ids = tok.encode_array(piece)
                    cut = max(0, min(len(ids), n_train - written))
                    train.write(ids[:cut].tobytes())
                    val.write(ids[cut : max(cut, n_train + n_val - written)].tobytes())
                    written += len(ids)
                continue
            if f.name in s.text_docs:
                h, n_chars, n_bytes = s.text_docs[f.name]
                pieces = doc
            else:
                (text,) = doc
                raw = text.encode("utf-8")
                h, n_chars, n_bytes, pieces = doc_hash(raw).digest(), len(text), len(raw), doc
            split = router.route(h, n_chars + 1, n_bytes) if n_chars else None
            if split is not None:
                for piece in pieces:
                    sink[split].write(tok.encode_array(piece).tobytes())
                sink[split].write(eod)
    meta = {"vocab_size": tok.vocab_size, "chars": tok.chars}
    if not one:
        meta["eod"] = tok.eod_id
        n_train, n_val = router.tokens["train"], router.tokens["val"]
    meta |= {"dtype": np.dtype(tok.dtype).name, "n_train": n_train, "n_val": n_val}
    if not one:
        meta["documents"] = router.docs
    return meta


def prepare(layout: Layout, data: DataParams) -> tuple[dict, Scan]:
    raw = layout.require(layout.raw)
    files = shard_files(raw, layout)
    s = scan(files, layout, data)
    if s.split is not None:
        _check_documents(s.split)
    else:
        try:
            _cut(s.n_chars, data)
        except ValueError as err:
            raise StageError(f"{layout.relative(files[0])}: {err}") from None
    out = layout.prepared
    meta = encode(files, layout, data, s, out)
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False))
    return meta, s


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__).parse_args(argv)
    layout = Layout.load()
    p = load_params(layout.root / "params.yaml")
    meta, s = prepare(layout, p.data)
    dest = layout.relative(layout.prepared)
    print(
        f"vocab {meta['vocab_size']} tokens; train {meta['n_train']:,} tokens, "
        f"val {meta['n_val']:,} tokens -> {dest}/"
    )
    if s.split is not None:
        d, f = s.split.docs, p.data.val_fraction
        print(
            f"{d['train']:,} documents train, {d['val']:,} val ({d['left out']:,} left out by "
            f"data.max_val_tokens); val holds {s.split.val_share:.2%} of the bytes "
            f"(data.val_fraction {f:.0%}, expected within +-{2 * s.split.share_sd:.2%})"
        )
    return 0


if __name__ == "__main__":
    run_stage(main)
