"""Which split each document lands in: chosen by a hash of its content, in one pass.

A document goes to validation when the first 8 bytes of its BLAKE2b digest, read as a
fraction of 2^64, fall below ``data.val_fraction``: no shuffle and no second look, the same
answer on every machine and in both of prepare's passes, and two copies of a document land in
the same split. Documents are never cut: the validation split holds whole documents, and
so does the training split.

``data.max_val_tokens`` caps the validation split: validation documents are taken in corpus
order until the next one would pass the cap; it and every later one are left out of both
splits (so the cap never moves a document into training).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

_SCALE = float(2**64)


def doc_hash(utf8: bytes = b"") -> hashlib.blake2b:
    """The hash that routes a document: BLAKE2b of its UTF-8 bytes, 8 bytes long (feed the
    rest of a long document with ``update``)."""
    return hashlib.blake2b(utf8, digest_size=8)


def is_val(doc_digest: bytes, val_fraction: float) -> bool:
    return int.from_bytes(doc_digest, "big") / _SCALE < val_fraction


@dataclass
class Splitter:
    """Routes documents in corpus order to "train", "val" or None (past the val cap), and
    counts what went where; two Splitters fed the same documents route them the same way."""

    val_fraction: float
    max_val_tokens: int | None = None
    tokens: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    docs: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "left out": 0})
    bytes: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    _sum_sq: float = 0.0  # sum of squared document sizes, for the share's spread
    _closed: bool = False  # a val document passed the cap: every later one is left out

    def route(self, doc_digest: bytes, n_tokens: int, n_bytes: int) -> str | None:
        split = "val" if is_val(doc_digest, self.val_fraction) else "train"
        cap = self.max_val_tokens
        if split == "val" and (self._closed or (cap and self.tokens["val"] + n_tokens > cap)):
            self._closed = True
            self.docs["left out"] += 1
            return None
        self.tokens[split] += n_tokens
        self.docs[split] += 1
        self.bytes[split] += n_bytes
        self._sum_sq += float(n_bytes) ** 2
        return split

    @property
    def val_share(self) -> float:
        """The share of the kept bytes in validation."""
        return self.bytes["val"] / max(sum(self.bytes.values()), 1)

    @property
    def share_sd(self) -> float:
        """The standard deviation of ``val_share`` over hash functions: each document is an
        independent draw with probability ``val_fraction``, weighted by its bytes."""
        f, total = self.val_fraction, sum(self.bytes.values())
        return math.sqrt(f * (1 - f) * self._sum_sq) / max(total, 1)
