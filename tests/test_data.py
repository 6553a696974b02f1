"""Tokenizer, prepared splits, batch sampling and full-split iteration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nanomoe.data import (
    CharTokenizer,
    get_batch,
    iter_full_split,
    load_meta,
    load_split,
    load_tokenizer,
    prepare,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

UNICODE_TEXT = "Héllo — wörld 🙂\nnaïve café, 日本語 ✓\ttabs\n"


def test_tokenizer_vocab_is_the_corpus_characters_sorted_by_code_point():
    tok = CharTokenizer.from_text(UNICODE_TEXT)
    assert set(tok.chars) == set(UNICODE_TEXT)
    assert len(tok.chars) == len(set(UNICODE_TEXT))
    assert [ord(c) for c in tok.chars] == sorted(ord(c) for c in set(UNICODE_TEXT))
    for ch in "é—🙂日✓\t\n":
        assert ch in tok.chars


def test_encode_decode_round_trip_on_unicode():
    tok = CharTokenizer.from_text(UNICODE_TEXT)
    ids = tok.encode(UNICODE_TEXT)
    assert len(ids) == len(UNICODE_TEXT)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == UNICODE_TEXT
    assert tok.decode(np.array(ids, dtype=np.uint16)) == UNICODE_TEXT


def test_same_corpus_gives_same_ids_whatever_the_order_of_first_occurrence():
    a = CharTokenizer.from_text("abc")
    b = CharTokenizer.from_text("cba")
    assert a.chars == b.chars
    assert a.encode("cab") == b.encode("cab")


def test_unknown_characters_raise_value_error_listing_them():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError) as info:
        tok.encode("abzq€")
    msg = str(info.value)
    for ch in "zq€":
        assert ch in msg
    assert "a" not in msg.split("'")[1]  # only the unknown ones are listed


def test_tokenizer_rejects_empty_corpus_and_repeated_characters():
    with pytest.raises(ValueError):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError):
        CharTokenizer("abca")


def test_dtype_is_uint16_up_to_65536_characters_then_uint32():
    at_limit = CharTokenizer("".join(chr(0x20000 + i) for i in range(2**16)))
    over = CharTokenizer("".join(chr(0x20000 + i) for i in range(2**16 + 1)))
    assert at_limit.vocab_size == 2**16 and at_limit.dtype == np.uint16
    assert over.vocab_size == 2**16 + 1 and over.dtype == np.uint32
    # the largest id of each vocabulary is representable in its dtype
    assert np.iinfo(at_limit.dtype).max >= at_limit.vocab_size - 1
    assert np.iinfo(over.dtype).max >= over.vocab_size - 1
    assert CharTokenizer.from_text("ab").dtype == np.uint16


def test_prepare_writes_a_90_10_split_that_decodes_back_to_the_corpus(tmp_path):
    text = (UNICODE_TEXT * 40)[:1000]
    meta = prepare(text, tmp_path)
    for name in ("train.bin", "val.bin", "meta.json"):
        assert (tmp_path / name).is_file()
    assert meta == load_meta(tmp_path)
    assert meta["n_train"] == 900 and meta["n_val"] == 100
    assert meta["vocab_size"] == len(set(text))
    assert meta["dtype"] == "uint16"
    train, val = load_split(tmp_path, "train"), load_split(tmp_path, "val")
    assert len(train) == 900 and len(val) == 100
    tok = load_tokenizer(tmp_path)
    assert tok.decode(train) + tok.decode(val) == text
    assert tok.decode(val) == text[900:]
    # meta.json keeps the characters themselves, not \u escapes
    assert "🙂" in (tmp_path / "meta.json").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "meta.json").read_text(encoding="utf-8"))["chars"] == tok.chars


def test_prepare_uses_uint32_for_vocabularies_over_65536(tmp_path):
    chars = "".join(chr(0x20000 + i) for i in range(2**16 + 3))
    text = chars + chars[::-1]
    meta = prepare(text, tmp_path)
    assert meta["dtype"] == "uint32"
    train, val = load_split(tmp_path, "train"), load_split(tmp_path, "val")
    assert train.dtype == np.uint32
    assert int(max(train.max(), val.max())) == 2**16 + 2
    tok = load_tokenizer(tmp_path)
    assert tok.decode(train) + tok.decode(val) == text


def test_prepare_rejects_a_bad_fraction_or_a_tiny_corpus(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        prepare("abcdefghij" * 10, tmp_path, val_fraction=1.0)
    with pytest.raises(ValueError):
        prepare("abcde", tmp_path)


def test_get_batch_targets_are_inputs_shifted_by_one():
    data = np.arange(200, dtype=np.uint16)
    gen = torch.Generator().manual_seed(0)
    x, y = get_batch(data, batch_size=8, block_size=16, generator=gen)
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == torch.int64
    # data[i] == i, so every window is a contiguous run and y is x shifted by one
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    assert int(y.max()) <= 199


def test_get_batch_is_reproducible_from_the_generator_and_can_reach_the_last_token():
    data = np.arange(20, dtype=np.uint16)
    a = get_batch(data, 64, 8, torch.Generator().manual_seed(3))
    b = get_batch(data, 64, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    seen = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        seen |= set(get_batch(data, 64, 8, gen)[1].flatten().tolist())
    assert 19 in seen and 0 not in seen


def test_get_batch_rejects_a_split_no_longer_than_block_size():
    with pytest.raises(ValueError, match="block_size"):
        get_batch(np.arange(16), 2, 16, torch.Generator())


@pytest.mark.parametrize("n_tokens", [2, 5, 16, 17, 33, 40, 100, 161])
@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_iter_full_split_scores_every_target_exactly_once(n_tokens, block_size):
    data = np.arange(n_tokens, dtype=np.uint16) + 7  # distinct values: each one is a target id
    scored = []
    for x, y in iter_full_split(data, block_size, batch_size=3):
        assert x.shape == y.shape and x.dtype == y.dtype == torch.int64
        assert x.size(1) == min(block_size, n_tokens - 1)
        keep = y != -1
        assert torch.equal(y[keep], (x + 1)[keep])  # each kept target follows its input
        # masking only ever drops a prefix of a window
        for row in keep:
            first = int(row.float().argmax()) if row.any() else row.numel()
            assert not row[:first].any() and row[first:].all()
        scored += y[keep].tolist()
    assert sorted(scored) == list(range(8, n_tokens + 7))


# --- meta.json of each tokenizer ----------------------------------------------------------


def _bpe_meta(tmp_path, **changes) -> dict:
    """A BPE split's meta.json in ``tmp_path``: ids only, no characters; the end token last."""
    meta = {"tokenizer": "bpe", "vocab_size": 300, "eod": 299, "dtype": "uint16"}
    meta |= {"n_train": 4, "n_val": 2, **changes}
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    np.array([1, 2, 299, 3], dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.array([256, 299], dtype=np.uint16).tofile(tmp_path / "val.bin")
    return meta


def test_a_bpe_split_loads_without_characters(tmp_path):
    """Mutation killed: load_meta asking every meta.json for ``chars`` (a BPE's has none)."""
    meta = _bpe_meta(tmp_path)
    assert load_meta(tmp_path) == meta
    assert load_split(tmp_path, "val").tolist() == [256, 299]


@pytest.mark.parametrize(
    "changes, word",
    [
        ({"eod": 7}, "eod: must be 299"),  # the end token is the last id
        ({"tokenizer": "wordpiece"}, "tokenizer: must be char or bpe"),
        ({"tokenizer": "char"}, "chars: is missing"),  # a char split names its characters
    ],
    ids=["bpe-eod-not-last", "unknown-tokenizer", "char-without-chars"],
)
def test_meta_json_is_checked_for_its_own_tokenizer(tmp_path, changes, word):
    """Mutations killed: the BPE end-token check removed; an unknown ``tokenizer`` read as a
    BPE's; a char meta.json let through without ``chars``."""
    from nanomoe.config import InputError

    _bpe_meta(tmp_path, **changes)
    with pytest.raises(InputError) as err:
        load_meta(tmp_path)
    message = str(err.value)
    assert word in message and "meta.json" in message and "\n" not in message
