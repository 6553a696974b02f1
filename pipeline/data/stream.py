"""The corpus in data/raw/ as a stream of text, split: what the tokenizer and prepare stages
read, each in two passes over the shards.

``scan`` (pass 1) reads every shard, checks it (pipeline/data/shards.py), gathers the characters
and routes each document to its split (pipeline/data/split.py). ``split_text`` (pass 2) reads the
shards again and yields each kept document's text, piece by piece, with its split. Memory
holds a chunk of text, never the corpus.

One text file keeps nanoGPT's cut: the first 1 - data.val_fraction of its characters train,
the rest validate. Any other corpus is documents, each routed whole by a hash of its text.
Either way the split is cut on characters, before any tokenizer sees it, so every tokenizer
is trained on, and evaluated on, the same text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from pipeline.data.shards import documents
from pipeline.data.split import Splitter, doc_hash
from pipeline.layout import Layout
from pipeline.sources import DataParams, shard_format
from pipeline.stage import StageError

END = None  # split_text's piece where a document ends


@dataclass
class Scan:
    """What pass 1 learns: the characters, and how the corpus splits."""

    seen: np.ndarray = field(default_factory=lambda: np.zeros(0x110000, dtype=bool))
    n_chars: int = 0  # every character of the corpus
    split: Splitter | None = None  # documents: the router, having seen every document
    text_docs: dict[str, tuple[bytes, int, int]] = field(default_factory=dict)
    # a text shard's (digest, characters, bytes): it is one document, routed before pass 2
    # reads it, so pass 2 needs its hash before it reads it

    def see(self, piece: str) -> None:
        """Mark the piece's characters (by code point: ~10x faster than a set of str)."""
        self.seen[np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)] = True

    @property
    def chars(self) -> str:
        """Every character of the corpus, in code-point order."""
        return "".join(map(chr, np.flatnonzero(self.seen)))

    @property
    def documents(self) -> bool:
        """Whether the corpus is documents (anything but one text file)."""
        return self.split is not None


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


def scan(files: list[Path], layout: Layout, data: DataParams, desc: str) -> Scan:
    """Pass 1: every shard read and checked; nothing written."""
    s = Scan(split=None if is_one_text(files) else Splitter(data.val_fraction, data.max_val_tokens))
    for f, doc in _pieces(files, layout, data, f"{desc}: check"):
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


def cut(n_chars: int, data: DataParams) -> tuple[int, int]:
    """(train, val) characters of one text file: nanoGPT's contiguous cut, val capped."""
    n_val = int(round(n_chars * data.val_fraction))
    n_train = n_chars - n_val
    if n_train < 2 or n_val < 2:
        raise ValueError(f"corpus of {n_chars} characters is too small to split")
    return n_train, min(n_val, data.max_val_tokens or n_val)


def split_text(
    files: list[Path], layout: Layout, data: DataParams, s: Scan, router: Splitter, desc: str
) -> Iterator[tuple[str, str | None]]:
    """Pass 2: (split, piece) for the text of every kept document in corpus order, and
    (split, ``END``) where one ends. One text file is two documents: its train cut, then its
    val cut. ``router`` (a fresh Splitter) routes the documents and counts what went where."""
    n_train, n_val = (0, 0) if s.documents else cut(s.n_chars, data)
    written = 0  # one text file: characters so far
    for f, doc in _pieces(files, layout, data, f"{desc}: encode"):
        if not s.documents:
            for piece in doc:
                at = max(0, min(len(piece), n_train - written))
                if at:
                    yield "train", piece[:at]
                tail = piece[at : max(at, n_train + n_val - written)]
                if tail:
                    yield "val", tail
                written += len(piece)
            yield "train", END
            yield "val", END
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
                yield split, piece
            yield split, END
