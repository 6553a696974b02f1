"""F-grams: frequent token n-grams, mined from the training split and folded into the
embedding of the position where they end.

Three pieces, each vectorized:

- ``mine_fgrams``: counts every n-gram for n = 2..N with one ``np.unique`` per n over
  integer keys, keeps those seen at least ``min_count`` times, and ranks them by
  ``score = count * (n - 1)``: the characters an n-gram lets the model predict from a
  single unit, so long frequent n-grams beat short ones of equal count. The table's file
  is ``nanomoe/fgram_table.py``'s.
- ``FgramMatcher``: for every position, the length of the longest mined n-gram ending there
  (0 for none), by exact integer keys and ``searchsorted``; no loop over batch or time.
- ``FgramContextualizer``: a one-layer Transformer over each matched span, whose output at
  the span's last position is *added* to that position's token embedding through a
  zero-initialized projection. Add, not replace: positions without a match keep their plain
  embedding, and at initialization the F-gram model computes exactly what the baseline
  computes, so the ablation measures what the feature learns, not an init handicap.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nanomoe.config import MiningConfig
from nanomoe.fgram_table import Fgram, load_fgrams, save_fgrams

__all__ = [
    "Fgram",
    "mine_fgrams",
    "save_fgrams",
    "load_fgrams",
    "FgramMatcher",
    "FgramContextualizer",
]

_INT64_LIMIT = 2**63


def _check_key_range(vocab_size: int, max_n: int) -> None:
    if vocab_size**max_n >= _INT64_LIMIT:
        raise ValueError(
            f"fgram_max_n: {max_n}-grams over a vocabulary of {vocab_size} do not fit exact "
            "64-bit keys; lower fgram_max_n"
        )


def _keys(ids: np.ndarray, n: int, base: int) -> np.ndarray:
    """Exact integer key of every n-gram window of ``ids`` (base-``vocab`` digits)."""
    ids = ids.astype(np.int64)
    m = len(ids) - n + 1
    key = np.zeros(m, dtype=np.int64)
    for j in range(n):  # loop over the n-gram's length, never over positions
        key = key * base + ids[j : j + m]
    return key


def _unkey(key: int, n: int, base: int) -> tuple[int, ...]:
    out = []
    for _ in range(n):
        key, d = divmod(key, base)
        out.append(int(d))
    return tuple(reversed(out))


def _spans(ids: np.ndarray, n: int, boundary: int | None) -> np.ndarray | None:
    """Which n-gram windows of ``ids`` hold the ``boundary`` id (None: no boundary)."""
    if boundary is None:
        return None
    seen = np.concatenate([[0], np.cumsum(ids == boundary)])
    return seen[n:] - seen[:-n] > 0


def mine_fgrams(
    ids: np.ndarray,
    vocab_size: int,
    max_n: int,
    min_count: int = 2,
    max_fgrams: int = 1024,
    boundary: int | None = None,
) -> list[Fgram]:
    """The top ``max_fgrams`` n-grams (2 <= n <= ``max_n``) of a token-id array by score.

    ``boundary``: the end-of-document id. No n-gram holding it is counted, so an F-gram never
    spans two documents (nor ends one). Ties break toward longer n-grams, then by ids, so
    mining is deterministic.
    """
    MiningConfig(max_n, min_count, max_fgrams)  # its rules, or a ValueError naming the field
    _check_key_range(vocab_size, max_n)
    ids = np.asarray(ids)
    found: list[Fgram] = []
    for n in range(2, max_n + 1):
        if len(ids) < n:
            break
        keys = _keys(ids, n, vocab_size)
        spans = _spans(ids, n, boundary)
        keys, counts = np.unique(keys if spans is None else keys[~spans], return_counts=True)
        keep = counts >= min_count
        for key, count in zip(keys[keep].tolist(), counts[keep].tolist(), strict=True):
            found.append(Fgram(_unkey(key, n, vocab_size), count, count * (n - 1)))
    found.sort(key=lambda g: (-g.score, -g.n, g.ids))
    return found[:max_fgrams]


class FgramMatcher(nn.Module):
    """Length of the longest mined n-gram ending at each position (0 when none)."""

    def __init__(self, fgrams: list[tuple[int, ...]], vocab_size: int, max_n: int) -> None:
        super().__init__()
        _check_key_range(vocab_size, max_n)
        self.vocab_size, self.max_n = vocab_size, max_n
        for n in range(2, max_n + 1):
            powers = torch.tensor([vocab_size ** (n - 1 - j) for j in range(n)], dtype=torch.long)
            grams = torch.tensor([g for g in fgrams if len(g) == n], dtype=torch.long)
            keys = torch.unique(grams.view(-1, n) @ powers)  # sorted, for searchsorted
            self.register_buffer(f"keys_{n}", keys, persistent=False)
            self.register_buffer(f"powers_{n}", powers, persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        lengths = torch.zeros(B, T, dtype=torch.long, device=idx.device)
        for n in range(2, min(self.max_n, T) + 1):  # shortest first: longer matches overwrite
            keys = getattr(self, f"keys_{n}")
            if keys.numel() == 0:
                continue
            key = (idx.unfold(1, n, 1) * getattr(self, f"powers_{n}")).sum(-1)  # (B, T-n+1)
            pos = torch.searchsorted(keys, key).clamp_(max=keys.numel() - 1)
            hit = keys[pos] == key
            lengths[:, n - 1 :] = torch.where(hit, n, lengths[:, n - 1 :])
        return lengths


class FgramContextualizer(nn.Module):
    """One-layer Transformer over each matched span, read out at the span's last position.

    Span slot j holds the token j steps before the current one (slot 0 is the current
    token), so the span never reaches past the current position: strictly causal. Inputs are
    ``LayerNorm(token embedding) + slot embedding``; because that is affine in the slot, the
    key and value projections are computed once per sequence position and gathered into the
    spans, instead of once per (position, slot). Only the last position's output is needed
    and a one-layer Transformer's last output depends only on its own query, so this equals
    running the layer over every span and keeping its last position, at the cost of about
    one extra block rather than ``max_n`` of them.
    """

    def __init__(self, n_embd: int, n_head: int, max_n: int, bias: bool) -> None:
        super().__init__()
        self.n_head, self.max_n = n_head, max_n
        self.ln_in = nn.LayerNorm(n_embd, bias=bias)
        self.slot_emb = nn.Parameter(torch.zeros(max_n, n_embd))
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.ln_mlp = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 2 * n_embd, bias=bias),
            nn.GELU(),
            nn.Linear(2 * n_embd, n_embd, bias=bias),
        )
        self.out = nn.Linear(n_embd, n_embd, bias=False)
        nn.init.normal_(self.slot_emb, std=0.02)

    def reset_out(self) -> None:
        """Zero the output projection, so the F-gram path starts as the identity."""
        nn.init.zeros_(self.out.weight)

    def forward(self, tok_emb: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``tok_emb`` (B, T, C), ``lengths`` (B, T) -> the addition to each embedding."""
        B, T, C = tok_emb.shape
        N, nh = min(self.max_n, T), self.n_head
        h = self.ln_in(tok_emb)
        w_q, w_k, w_v = self.qkv.weight.split(C)
        b_q, b_k, b_v = self.qkv.bias.split(C) if self.qkv.bias is not None else (None,) * 3
        slots = self.slot_emb[:N]  # (N, C)
        k_tok, v_tok = F.linear(h, w_k, b_k), F.linear(h, w_v, b_v)  # (B, T, C)
        src = (torch.arange(T, device=h.device)[:, None] - torch.arange(N, device=h.device)).clamp(
            min=0
        )
        k = k_tok[:, src] + F.linear(slots, w_k)  # (B, T, N, C)
        v = v_tok[:, src] + F.linear(slots, w_v)
        x = h + slots[0]  # the span's last position, the only output we need
        q = F.linear(x, w_q, b_q)  # (B, T, C)
        valid = torch.arange(N, device=h.device) < lengths.clamp(min=1)[..., None]  # (B, T, N)
        q = q.view(B * T, 1, nh, C // nh).transpose(1, 2)  # (BT, nh, 1, hs)
        k = k.view(B * T, N, nh, C // nh).transpose(1, 2)  # (BT, nh, N, hs)
        v = v.view(B * T, N, nh, C // nh).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=valid.view(B * T, 1, 1, N))
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        x = x + self.mlp(self.ln_mlp(x))
        return self.out(x) * (lengths > 0).unsqueeze(-1).to(x.dtype)
