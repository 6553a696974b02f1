"""One tokenizer's prepared ids and the tokenizer that wrote them, read together and checked
to belong together: a cell never reads ids with another tokenizer than the one that wrote
them (a tokenizer stage re-run without its prepare stage, say)."""

from __future__ import annotations

from nanomoe.data import load_meta
from nanomoe.tokenizer import Tokenizer, read_tokenizer
from pipeline.layout import Layout
from pipeline.stage import StageError


def read_tokens(layout: Layout, kind: str) -> tuple[Tokenizer, dict]:
    """(the tokenizer of ``kind``, its prepared data's meta.json), checked."""
    prepared = layout.require(layout.prepared(kind))
    meta = load_meta(prepared)
    path = layout.require(layout.tokenizer(kind))
    tok, sha = read_tokenizer(path, f"run dvc repro tokenizer@{kind}")
    if meta.get("tokenizer_sha256") != sha or tok.kind != kind:
        raise StageError(
            f"{layout.relative(path)}: not the tokenizer {layout.relative(prepared)}/ was "
            f"encoded with; run dvc repro prepare@{kind}"
        )
    return tok, meta
