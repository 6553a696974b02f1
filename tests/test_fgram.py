"""F-grams: mining against brute-force counts, the vectorized matcher against a Python
reference, JSON round trip, and the contextualizer against a per-span Transformer."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from nanomoe.data import CharTokenizer
from nanomoe.fgram import (
    Fgram,
    FgramContextualizer,
    FgramMatcher,
    load_fgrams,
    mine_fgrams,
    save_fgrams,
)
from nanomoe.model import GPT

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# --- references -------------------------------------------------------------------------


def brute_force_counts(ids, max_n: int) -> Counter:
    ids = [int(i) for i in ids]
    counts = Counter()
    for n in range(2, max_n + 1):
        for i in range(len(ids) - n + 1):
            counts[tuple(ids[i : i + n])] += 1
    return counts


def brute_force_longest_match(idx: torch.Tensor, table: set, max_n: int) -> torch.Tensor:
    B, T = idx.shape
    out = torch.zeros(B, T, dtype=torch.long)
    rows = idx.tolist()
    for b in range(B):
        for t in range(T):
            for n in range(2, max_n + 1):
                if t - n + 1 >= 0 and tuple(rows[b][t - n + 1 : t + 1]) in table:
                    out[b, t] = n
    return out


# --- mining -------------------------------------------------------------------------------

PLANTED = ["XYZW", "QRS"]


@pytest.fixture(scope="module")
def planted_corpus():
    """Random lowercase letters with two strings of other characters planted 60 times each."""
    rng = np.random.default_rng(7)
    alphabet = "abcdefghijklmnopqrst"
    pieces = []
    for i in range(120):
        pieces.append("".join(rng.choice(list(alphabet), size=int(rng.integers(5, 30)))))
        pieces.append(PLANTED[i % 2])
    text = "".join(pieces)
    tok = CharTokenizer.from_text(text)
    return text, tok, np.array(tok.encode(text), dtype=tok.dtype)


def test_mining_ranks_planted_ngrams_first(planted_corpus):
    text, tok, ids = planted_corpus
    got = mine_fgrams(ids, tok.vocab_size, max_n=4, min_count=2, max_fgrams=50)
    planted_ngrams = {
        s[i : i + n] for s in PLANTED for n in range(2, len(s) + 1) for i in range(len(s) - n + 1)
    }
    top = {tok.decode(g.ids) for g in got[: len(planted_ngrams)]}
    assert top == planted_ngrams
    assert tok.decode(got[0].ids) == "XYZW"  # the longest planted string scores highest
    assert got[0].count == text.count("XYZW") == 60


def test_mining_counts_equal_brute_force_and_ranking_follows_score(planted_corpus):
    _, tok, ids = planted_corpus
    got = mine_fgrams(ids, tok.vocab_size, max_n=4, min_count=3, max_fgrams=10**6)
    counts = brute_force_counts(ids, 4)
    expected = [(g, c, c * (len(g) - 1)) for g, c in counts.items() if c >= 3]
    expected.sort(key=lambda e: (-e[2], -len(e[0]), e[0]))
    assert [(g.ids, g.count, g.score) for g in got] == expected
    for g in got:
        assert g.score == g.count * (g.n - 1)
        assert g.count >= 3
        assert 2 <= g.n <= 4
    scores = [g.score for g in got]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mining_matches_brute_force_on_random_ids(seed):
    rng = np.random.default_rng(seed)
    vocab = 5
    ids = rng.integers(0, vocab, size=400).astype(np.uint16)
    got = mine_fgrams(ids, vocab, max_n=5, min_count=2, max_fgrams=10**6)
    counts = brute_force_counts(ids, 5)
    assert {g.ids: g.count for g in got} == {g: c for g, c in counts.items() if c >= 2}


def test_mining_respects_min_count_and_max_fgrams(planted_corpus):
    _, tok, ids = planted_corpus
    full = mine_fgrams(ids, tok.vocab_size, max_n=4, min_count=1, max_fgrams=10**6)
    assert any(g.count == 1 for g in full)
    assert len(full) == len(brute_force_counts(ids, 4))
    strict = mine_fgrams(ids, tok.vocab_size, max_n=4, min_count=20, max_fgrams=10**6)
    assert strict and all(g.count >= 20 for g in strict)
    assert strict == [g for g in full if g.count >= 20]
    capped = mine_fgrams(ids, tok.vocab_size, max_n=4, min_count=1, max_fgrams=7)
    assert capped == full[:7]


def test_mining_rejects_bad_arguments_and_keys_that_overflow_int64():
    ids = np.zeros(10, dtype=np.uint16)
    with pytest.raises(ValueError, match="max_n"):
        mine_fgrams(ids, 3, max_n=1)
    with pytest.raises(ValueError):
        mine_fgrams(ids, 3, max_n=2, min_count=0)
    with pytest.raises(ValueError):
        mine_fgrams(ids, 3, max_n=2, max_fgrams=0)
    with pytest.raises(ValueError, match="fgram_max_n"):
        mine_fgrams(ids, 2**16, max_n=4)  # 65536**4 == 2**64
    with pytest.raises(ValueError, match="fgram_max_n"):
        FgramMatcher([], 2**16, 4)


def test_mining_a_corpus_shorter_than_max_n():
    got = mine_fgrams(np.array([0, 1, 0], dtype=np.uint16), 2, max_n=5, min_count=1)
    assert {g.ids for g in got} == {(0, 1), (1, 0), (0, 1, 0)}


# --- save / load --------------------------------------------------------------------------


def test_save_load_round_trip_with_non_ascii_and_max_n_filter(tmp_path):
    chars = "ab—é🙂日"
    fgrams = [
        Fgram((2, 3), 10, 10),
        Fgram((4, 4, 5), 7, 14),
        Fgram((0, 2, 3, 4), 3, 9),
        Fgram((5, 1), 2, 2),
    ]
    path = tmp_path / "fgrams.json"
    save_fgrams(path, fgrams, chars, meta={"source": "test"})
    assert load_fgrams(path) == fgrams
    assert load_fgrams(path, max_n=3) == [g for g in fgrams if g.n <= 3]
    assert load_fgrams(path, max_n=2) == [fgrams[0], fgrams[3]]
    raw = path.read_text(encoding="utf-8")
    assert "🙂🙂日" in raw and "—é" in raw  # characters written as themselves
    doc = json.loads(raw)
    assert [e["text"] for e in doc["fgrams"]] == ["—é", "🙂🙂日", "a—é🙂", "日b"]
    assert doc["source"] == "test" and doc["vocab_size"] == len(chars)


def test_mined_fgrams_survive_a_save_load_round_trip(tmp_path, planted_corpus):
    _, tok, ids = planted_corpus
    mined = mine_fgrams(ids, tok.vocab_size, max_n=4, min_count=2, max_fgrams=40)
    save_fgrams(tmp_path / "f.json", mined, tok.chars)
    assert load_fgrams(tmp_path / "f.json") == mined


def test_a_table_saved_with_its_tokenizer_counts_the_end_token_and_never_holds_it(tmp_path):
    """The mine_fgrams stage passes its tokenizer: the table's vocabulary counts the end
    token, each F-gram is spelled by the tokenizer, and an entry holding the end token is
    refused by name. Mutations killed: save_fgrams' vocab_size taken from the characters
    (the end token left out); the end-of-document check of a loaded entry removed."""
    from nanomoe.config import InputError

    tok = CharTokenizer("ab—é", eod=True)  # ids 0-3, the end token 4
    fgrams = [Fgram((2, 3), 5, 5), Fgram((0, 1, 0), 3, 6)]
    path = tmp_path / "fgrams.json"
    save_fgrams(path, fgrams, tok)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["vocab_size"] == 5 and [e["text"] for e in doc["fgrams"]] == ["—é", "aba"]
    assert load_fgrams(path, vocab_size=5, chars=tok) == fgrams
    assert load_fgrams(path, vocab_size=5, chars=tok.chars) == fgrams  # meta.json's chars
    doc["fgrams"][0] = {"ids": [2, 4], "count": 5, "score": 5}
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputError, match=r"fgrams\[0\]: ids: \[2, 4\] holds the end-of-doc"):
        load_fgrams(path, vocab_size=5, chars=tok)


# --- matcher ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_vectorized_matcher_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    vocab, max_n, B, T = 4 + seed, 5, 3, 24
    idx = torch.randint(0, vocab, (B, T), generator=g)
    table = set()
    for _ in range(12):  # random grams of mixed lengths, most of them absent from idx
        n = int(torch.randint(2, max_n + 1, (1,), generator=g))
        table.add(tuple(torch.randint(0, vocab, (n,), generator=g).tolist()))
    for _ in range(6):  # grams cut from idx so that there are hits
        b = int(torch.randint(0, B, (1,), generator=g))
        n = int(torch.randint(2, max_n + 1, (1,), generator=g))
        t = int(torch.randint(n - 1, T, (1,), generator=g))
        table.add(tuple(idx[b, t - n + 1 : t + 1].tolist()))
    table.add(tuple(idx[0, :max_n].tolist()))  # a match ending at position n-1
    table.add(tuple(idx[1, -3:].tolist()))  # a match ending at the last position
    table.add((0, 0, 0, 0, 0, 0))  # longer than max_n: never matched
    matcher = FgramMatcher(sorted(table), vocab, max_n)
    got = matcher(idx)
    expected = brute_force_longest_match(idx, {t for t in table if len(t) <= max_n}, max_n)
    assert torch.equal(got, expected)
    assert got[0, max_n - 1] == max_n
    assert got[1, -1] >= 3
    assert (got == 0).any() and (got > 0).any()
    assert (got[:, 0] == 0).all()  # nothing of length >= 2 ends at position 0


def test_matcher_distinguishes_grams_that_differ_only_by_leading_zeros():
    matcher = FgramMatcher([(0, 3), (0, 0, 0)], vocab_size=4, max_n=3)
    idx = torch.tensor([[1, 3, 0, 3, 0, 0, 0, 2]])
    assert matcher(idx).tolist() == [[0, 0, 0, 2, 0, 0, 3, 0]]


def test_matcher_with_an_empty_table_and_short_sequences():
    assert torch.equal(
        FgramMatcher([], 5, 3)(torch.ones(2, 7, dtype=torch.long)),
        torch.zeros(2, 7, dtype=torch.long),
    )
    matcher = FgramMatcher([(1, 2), (1, 2, 3, 4)], 5, 4)
    assert matcher(torch.tensor([[1]])).tolist() == [[0]]
    assert matcher(torch.tensor([[1, 2]])).tolist() == [[0, 2]]


# --- contextualizer -----------------------------------------------------------------------


def reference_contextualizer(ctx: FgramContextualizer, tok_emb, lengths):
    """Run the one-layer Transformer over every matched span, one span at a time: slot j is
    the token j steps back, input = LayerNorm(embedding) + slot embedding, read out at the
    current token (slot 0)."""
    B, T, C = tok_emb.shape
    nh = ctx.n_head
    out = torch.zeros(B, T, C)
    w_q, w_k, w_v = ctx.qkv.weight.split(C)
    for b in range(B):
        for t in range(T):
            L = int(lengths[b, t])
            if L == 0:
                continue
            span = torch.stack([ctx.ln_in(tok_emb[b, t - j]) + ctx.slot_emb[j] for j in range(L)])
            q = (span[0] @ w_q.T).view(nh, 1, C // nh)
            k = (span @ w_k.T).view(L, nh, C // nh).transpose(0, 1)
            v = (span @ w_v.T).view(L, nh, C // nh).transpose(0, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / (C // nh) ** 0.5, dim=-1)
            y = (att @ v).reshape(C)
            x = span[0] + ctx.proj(y)
            x = x + ctx.mlp(ctx.ln_mlp(x))
            out[b, t] = ctx.out(x)
    return out


def test_contextualizer_equals_a_transformer_run_over_each_span():
    torch.manual_seed(0)
    C, max_n, B, T = 16, 4, 2, 10
    ctx = FgramContextualizer(C, n_head=2, max_n=max_n, bias=False).eval()
    torch.nn.init.normal_(ctx.out.weight, std=0.3)  # the zero init would hide everything
    tok_emb = torch.randn(B, T, C)
    # 0 (no match) or 2..min(max_n, t + 1): a span never reaches before position 0
    lengths = torch.tensor([[0, 2, 3, 4, 0, 2, 0, 4, 3, 2], [0, 0, 3, 0, 2, 4, 4, 0, 0, 3]])
    with torch.no_grad():
        got = ctx(tok_emb, lengths)
        expected = reference_contextualizer(ctx, tok_emb, lengths)
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got[lengths == 0] == 0).all()
    assert (got[lengths > 0].abs().sum(-1) > 0).all()


def test_fgram_model_computes_the_baseline_at_initialization(tiny_model, tiny_splits):
    base = tiny_model(rope=True, moe=False, fgram=False, seed=1).eval()
    with_fgram = tiny_model(rope=True, moe=False, fgram=True, seed=2).eval()
    missing, unexpected = with_fgram.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("fgram_ctx.") for k in missing)
    train, _ = tiny_splits
    idx = torch.from_numpy(train[:64].astype(np.int64)).view(4, 16)
    assert (with_fgram.fgram_match(idx) > 0).any()
    with torch.no_grad():
        assert torch.equal(base(idx)[0], with_fgram(idx)[0])


def test_gpt_keeps_only_fgrams_within_fgram_max_n(tiny_config):
    config = tiny_config(fgram=True, fgram_max_n=3)
    model = GPT(config, fgrams=[Fgram((1, 2), 5, 5), (1, 2, 3), [3, 4, 5, 6], (7,)])
    assert model.fgram_ids == [[1, 2], [1, 2, 3]]


def test_no_fgram_spans_an_end_of_document_token():
    """Every window that holds the boundary id is left out of the counts, and only those.
    Mutation killed: the boundary ignored (``b<eod>`` and ``<eod>a`` are mined) or windows
    ending just before it dropped too (``ab`` undercounted)."""
    eod = 3
    ids = np.array([0, 1, eod, 0, 1, eod, 0, 1, 2, eod, 0, 1, 2], dtype=np.uint16)
    got = mine_fgrams(ids, 4, max_n=3, min_count=1, max_fgrams=100, boundary=eod)
    assert all(eod not in g.ids for g in got)
    expected = {g: c for g, c in brute_force_counts(ids, 3).items() if eod not in g}
    assert {g.ids: g.count for g in got} == expected
    assert expected[(0, 1)] == 4
