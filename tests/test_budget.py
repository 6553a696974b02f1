"""The bytes-matched budget (``tokenizer.match_bytes``): each tokenizer's cells train as many
steps as see the text a char cell sees in ``train.max_iters``."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _project import REPO

from pipeline.params import load_params
from pipeline.train.cell import budget

# TinyShakespeare's train split: 1,003,855 characters, 383,353 tokens of the 1,024-token BPE
CHARS, BPE_TOKENS = 1_003_855, 383_353


def meta(n_train: int, chars: int = CHARS, docs: int | None = None) -> dict:
    out = {"n_train": n_train, "text": {"train": {"chars": chars, "bytes": chars}}}
    return out if docs is None else {**out, "documents": {"train": docs, "val": 0}}


@pytest.fixture
def params():
    p = load_params(REPO / "params.yaml")
    return replace(p, tokenizer=replace(p.tokenizer, match_bytes=True))


def test_a_bpe_cell_trains_fewer_steps_that_see_the_char_cells_bytes(params):
    """A BPE token holds 2.62 characters, so 764 steps of equal tokens see the text of a
    char cell's 2,000. Mutation killed: the ratio inverted (5,237 steps, 6.9x the text)."""
    steps = budget(params, meta(BPE_TOKENS), 1337).max_iters
    assert steps == round(2000 * BPE_TOKENS / CHARS) == 764
    assert steps * CHARS / BPE_TOKENS == pytest.approx(2000, rel=1e-3)  # text, in char steps


def test_a_char_cell_keeps_max_iters_with_documents_too(params):
    """A char cell's tokens are its characters plus one end token per document."""
    assert budget(params, meta(CHARS), 1).max_iters == 2000
    assert budget(params, meta(CHARS + 40, docs=40), 1).max_iters == 2000


def test_without_match_bytes_every_cell_trains_max_iters():
    p = load_params(REPO / "params.yaml")
    assert budget(p, meta(BPE_TOKENS), 1).max_iters == p.train.max_iters
