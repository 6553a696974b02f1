"""The character tokenizer with its end-of-document token: the id after the characters,
decoded for display, 0 bytes of raw text, and a vectorized encode that agrees with encode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nanomoe.config import InputError
from nanomoe.data import load_meta, load_tokenizer
from nanomoe.tokenizer import EOD_TEXT, CharTokenizer

TEXT = "Il était une fois — un café ☕; Ωμέγα.\n"


def test_the_end_of_document_id_follows_the_characters():
    tok = CharTokenizer.from_text(TEXT, eod=True)
    assert tok.eod_id == len(tok.chars) == tok.vocab_size - 1
    assert CharTokenizer.from_text(TEXT).eod_id is None
    assert tok.decode([*tok.encode("un"), tok.eod_id]) == "un" + EOD_TEXT


def test_token_bytes_are_each_characters_utf8_length_and_0_for_the_end_token():
    """Mutation killed: the end token counted as one byte (bits per byte would count a
    document boundary as text)."""
    tok = CharTokenizer.from_text(TEXT, eod=True)
    ids = np.array([*tok.encode(TEXT), tok.eod_id, *tok.encode(TEXT)])
    assert tok.token_bytes()[ids].sum() == 2 * len(TEXT.encode("utf-8"))
    assert tok.token_bytes()[tok.eod_id] == 0


@pytest.mark.parametrize("chars", ["".join(sorted(set(TEXT))), "".join(sorted(set(TEXT)))[::-1]])
def test_encode_array_agrees_with_encode_whatever_the_vocabulary_order(chars):
    """Mutation killed: the lookup table filled with each character's rank by code point
    instead of its id (right only for a vocabulary in code-point order)."""
    tok = CharTokenizer(chars)
    assert tok.encode_array(TEXT * 3).tolist() == tok.encode(TEXT * 3)
    with pytest.raises(ValueError, match="not in the vocabulary: 'Z'"):
        tok.encode_array(TEXT + "Z")


def test_a_vocabulary_of_65536_characters_and_the_end_token_needs_uint32():
    chars = "".join(chr(c) for c in range(0x20, 0x20 + 2**16 + 0x800) if not 0xD800 <= c < 0xE000)
    tok = CharTokenizer(chars[: 2**16], eod=True)
    assert tok.vocab_size == 2**16 + 1 and tok.dtype is np.uint32
    assert CharTokenizer(chars[: 2**16]).dtype is np.uint16


def _meta(tmp_path, **changes) -> dict:
    meta = {"vocab_size": 4, "chars": "abc", "eod": 3, "dtype": "uint16", "n_train": 9, "n_val": 3}
    meta.update(changes)
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return meta


def test_meta_json_with_an_end_token_loads_and_names_it(tmp_path):
    _meta(tmp_path)
    assert load_tokenizer(tmp_path).eod_id == 3


@pytest.mark.parametrize(
    "changes, says",
    [({"eod": 2}, "eod: must be 3"), ({"vocab_size": 3}, "and the end-of-document token")],
)
def test_meta_json_with_a_misplaced_end_token_is_refused(tmp_path, changes, says):
    """Mutation killed: eod read without a check (an id aliasing a character)."""
    _meta(tmp_path, **changes)
    with pytest.raises(InputError, match=says):
        load_meta(tmp_path)
