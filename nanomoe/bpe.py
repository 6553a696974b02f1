"""Byte-level BPE: trained with rustbpe, encoded with tiktoken (nanochat's pair).

The vocabulary is the 256 single bytes, then the merges in the order rustbpe learned them,
then one special token, the end of a document (``EOD_TEXT``). ``vocab_size`` counts all of
them, the special token included, so a vocabulary of 1,024 learns 767 merges.

The ``tiktoken.Encoding`` is built from the saved merges (never ``tiktoken.get_encoding``,
which downloads), and documents are encoded with ``encode_ordinary``: text that looks like
``<|endoftext|>`` stays text, and only the pipeline puts the end token between documents.
Any UTF-8 text encodes, and decodes back to itself exactly.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import numpy as np
import rustbpe
import tiktoken

from nanomoe.vocab import EOD_TEXT, MAX_VOCAB, MIN_VOCAB

# GPT-4's split pattern (cl100k): words with their leading space or punctuation, up to three
# digits, runs of punctuation, newlines, whitespace; no piece crosses a newline that starts
# a word, so texts cut there encode as the whole does (``safe_cut``)
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
N_SPECIAL = MIN_VOCAB - 256  # the end-of-document token


class BPETokenizer:
    kind = "bpe"

    def __init__(self, ranks: list[bytes], pattern: str = SPLIT_PATTERN) -> None:
        if len(ranks) < 256 or len(set(ranks)) != len(ranks):
            raise ValueError("BPETokenizer: needs 256 single bytes, then distinct merges")
        self.ranks, self.pattern = ranks, pattern
        self.enc = tiktoken.Encoding(
            name="nanomoe-bpe",
            pat_str=pattern,
            mergeable_ranks={b: i for i, b in enumerate(ranks)},
            special_tokens={EOD_TEXT: len(ranks)},
        )

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn ``vocab_size - 1`` byte-level tokens from ``texts`` (the end token is the
        last id). The same texts in the same order always give the same merges."""
        if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
            raise ValueError(f"vocab_size: must be in [{MIN_VOCAB}, {MAX_VOCAB}], got {vocab_size}")
        t = rustbpe.Tokenizer()
        t.train_from_iterator(iter(texts), vocab_size - N_SPECIAL, pattern=SPLIT_PATTERN)
        ranks = sorted(t.get_mergeable_ranks(), key=lambda kv: kv[1])
        return cls([bytes(b) for b, _ in ranks])

    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + N_SPECIAL

    @property
    def eod_id(self) -> int:
        return len(self.ranks)

    eod = True  # a document's end always has its id (one text file never uses it)
    dtype = np.uint16

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.enc.encode_ordinary(text), dtype=self.dtype)

    def decode(self, ids) -> str:
        """The text of ``ids``; bytes that end mid-character (a sample cut anywhere) become
        U+FFFD rather than an error."""
        return self.enc.decode([int(i) for i in ids], errors="replace")

    def token_bytes(self) -> np.ndarray:
        """Raw bytes each id stands for, from the merges themselves (a lone byte-level token
        may be no valid UTF-8, so decoded strings would miscount); the end token 0."""
        return np.array([len(b) for b in self.ranks] + [0] * N_SPECIAL, dtype=np.int64)

    def to_dict(self) -> dict:
        ranks = [base64.b64encode(b).decode("ascii") for b in self.ranks]
        return {"kind": self.kind, "pattern": self.pattern, "eod": EOD_TEXT, "ranks": ranks}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        return cls([base64.b64decode(r) for r in d["ranks"]], d["pattern"])


def safe_cut(text: str) -> int:
    """Where ``text`` may be cut so that its two sides encode as the whole does: just after
    its last newline that a non-space character follows (no piece of ``SPLIT_PATTERN`` crosses
    one); 0 when there is none. A streamed text keeps the rest for its next piece."""
    i = len(text) - 1
    while True:
        i = text.rfind("\n", 0, i)
        if i < 0:
            return 0
        if not text[i + 1].isspace():
            return i + 1
