"""The byte-level BPE (nanomoe/bpe.py) and the tokenizer file: exact round trips on any
UTF-8, the end token only where the pipeline puts it, raw token bytes for bits per byte, a
deterministic file, and streamed encoding that agrees with encoding whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nanomoe.bpe import BPETokenizer, safe_cut
from nanomoe.config import InputError
from nanomoe.tokenizer import CharTokenizer, read_tokenizer, tokenizer_from_dict, tokenizer_text
from nanomoe.vocab import EOD_TEXT, MAX_VOCAB, MIN_VOCAB

CORPUS = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
) * 40
# Everything the round trip must survive: accents, emoji with ZWJ sequences and modifiers,
# CJK, tabs, CRLF, runs of newlines and spaces, NUL, leading and trailing whitespace.
HARD = [
    "café naïve Ærøskøbing Ωμέγα",
    "👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🏳️‍🌈 flag",
    "日本語のテキスト、中文文本。한국어",
    "\ttab\t\tseparated\t",
    "line one\r\nline two\r\n\r\n",
    "\n\n\n\nfour newlines, then    four spaces    and more\n \n",
    "nul \x00 inside \x00\x00",
    "   leading and trailing whitespace   \n\t ",
    "",
    EOD_TEXT + " is text here, not a token",
]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train([CORPUS], 300)


@pytest.mark.parametrize("text", HARD)
def test_bpe_round_trips_any_utf8_exactly(bpe, text):
    """Mutation killed: decode token by token (a character whose bytes two tokens share
    comes back as two U+FFFD)."""
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.encode_array(text).tolist() == ids


@pytest.mark.parametrize("text", [t for t in HARD if t])
def test_char_round_trips_the_corpus_characters(text):
    tok = CharTokenizer.from_text("".join(HARD))
    assert tok.decode(tok.encode(text)) == text


def test_text_that_looks_like_the_end_token_encodes_as_text(bpe):
    """Mutation killed: ``encode`` with ``allowed_special="all"`` (a document holding the
    string would end there)."""
    ids = bpe.encode(f"a{EOD_TEXT}b")
    assert bpe.eod_id not in ids
    assert bpe.decode([*ids, bpe.eod_id]) == f"a{EOD_TEXT}b{EOD_TEXT}"


def test_vocab_size_counts_the_bytes_the_merges_and_the_end_token(bpe):
    assert bpe.vocab_size == 300 and bpe.eod_id == 299 and len(bpe.ranks) == 299
    assert bpe.ranks[:256] == [bytes([b]) for b in range(256)]


def test_token_bytes_are_raw_bytes_even_where_a_token_is_no_valid_utf8():
    """nanochat's bug: byte lengths from decoded strings count a lone continuation byte as
    the 3 bytes of U+FFFD. Mutation killed: ``len(decode([i]).encode())``."""
    tok = BPETokenizer.train(["é" * 200 + " ab" * 200], 270)
    sizes = tok.token_bytes()
    lone = tok.ranks.index(b"\xa9")  # the second byte of "é": no character alone
    assert sizes[lone] == 1
    assert sizes[tok.eod_id] == 0
    text = "é ab é"
    assert sizes[tok.encode(text)].sum() == len(text.encode("utf-8"))


def test_a_sample_cut_mid_character_decodes_with_a_replacement_character(bpe):
    """Mutation killed: decode with errors="ignore" (the cut character vanishes)."""
    ids = bpe.encode("日本")
    first_byte = [b for b in range(256) if bytes([b]) == "日".encode()[:1]][0]
    assert "\ufffd" in bpe.decode([first_byte])
    assert bpe.decode(ids) == "日本"


def test_the_same_text_trains_the_same_tokenizer_file():
    """Mutation killed: the file keeping each token as decoded text instead of base64 bytes
    (a byte-level token that is no valid UTF-8 cannot come back)."""
    a, b = BPETokenizer.train([CORPUS], 320), BPETokenizer.train([CORPUS], 320)
    assert tokenizer_text(a) == tokenizer_text(b)
    again = tokenizer_from_dict(json.loads(tokenizer_text(a)))
    assert again.ranks == a.ranks and again.encode(CORPUS) == a.encode(CORPUS)


@pytest.mark.parametrize("size", [MIN_VOCAB - 1, MAX_VOCAB + 1])
def test_a_vocabulary_outside_bytes_plus_end_token_and_uint16_is_refused(size):
    with pytest.raises(ValueError, match="vocab_size: must be in"):
        BPETokenizer.train([CORPUS], size)


def test_streamed_pieces_cut_at_safe_points_encode_as_the_whole(bpe):
    """Mutation killed: ``safe_cut`` cutting after any newline (a run of newlines, or a
    newline followed by spaces, is one piece of the split pattern)."""
    text = "".join(HARD[:8]) + CORPUS[:3000]
    whole = bpe.encode(text)
    for size in (7, 64, 500):
        out, carry = [], ""
        for start in range(0, len(text), size):
            buf = carry + text[start : start + size]
            at = safe_cut(buf)
            out += bpe.encode(buf[:at])
            carry = buf[at:]
        assert out + bpe.encode(carry) == whole, size
    assert safe_cut("ab\n\ncd") == 4 and safe_cut("ab\n  cd") == 0 and safe_cut("abc") == 0


def test_a_broken_tokenizer_file_is_an_input_error_naming_it(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"kind": "wordpiece"}', encoding="utf-8")
    with pytest.raises(InputError, match="tokenizer.json: not a tokenizer file"):
        read_tokenizer(path, "run dvc repro tokenizer@bpe")
    with pytest.raises(InputError, match="not found"):
        read_tokenizer(tmp_path / "missing.json", "fix")


def test_encode_array_holds_uint16_ids(bpe):
    assert bpe.encode_array(CORPUS).dtype == np.uint16
