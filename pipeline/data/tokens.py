"""One tokenizer's prepared ids and the tokenizer that wrote them, read together and checked
to belong together: a cell never reads ids with another tokenizer than the one that wrote
them (a tokenizer stage re-run without its prepare stage, say)."""

from __future__ import annotations

from nanomoe.data import load_meta
from nanomoe.tokenizer import Tokenizer, read_tokenizer
from pipeline.layout import Layout
from pipeline.stage import StageError


def read_tokens(layout: Layout, kind: str, block_size: int | None = None) -> tuple[Tokenizer, dict]:
    """(the tokenizer of ``kind``, its prepared data's meta.json), checked; with
    ``block_size`` (a model's), each split must hold more tokens than one block, the first
    place that knows both numbers (a corpus too short fails here, not in the trainer)."""
    prepared = layout.require(layout.prepared(kind))
    meta = load_meta(prepared)
    path = layout.require(layout.tokenizer(kind))
    tok, sha = read_tokenizer(path, f"run dvc repro tokenizer@{kind}")
    if meta.get("tokenizer_sha256") != sha or tok.kind != kind:
        raise StageError(
            f"{layout.relative(path)}: not the tokenizer {layout.relative(prepared)}/ was "
            f"encoded with; run dvc repro prepare@{kind}"
        )
    for split in ("train", "val"):
        n = meta[f"n_{split}"]
        if block_size is not None and n <= block_size:
            raise StageError(
                f"{layout.relative(prepared)}: the {split} split has {n:,} tokens, not more than "
                f"one block (model.block_size={block_size}); use a longer corpus, "
                + ("raise data.val_fraction, " if split == "val" else "")
                + "or lower model.block_size"
            )
    return tok, meta
