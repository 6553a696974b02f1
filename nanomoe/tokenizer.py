"""The character tokenizer, and the one file format of every tokenizer (``save_tokenizer``).

The character tokenizer: one id per character of the corpus, plus, for a corpus of several
documents, one end-of-document id after them.

The vocabulary is whatever characters the corpus holds (any Unicode), sorted by code point,
so the same corpus always gives the same ids. The end-of-document token, when there is one,
takes the id after the last character (``eod_id == len(chars)``). It stands for no text: it
decodes to ``EOD_TEXT`` for display and counts 0 bytes of the raw text in ``token_bytes``.

No torch here: the prepare stage encodes whole corpora with it and must stay light.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nanomoe.config import InputError
from nanomoe.vocab import EOD_TEXT


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str, eod: bool = False) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: vocabulary has repeated characters")
        self.chars, self.eod = chars, eod
        self.stoi = {c: i for i, c in enumerate(chars)}
        points = np.array([ord(c) for c in chars], dtype=np.int64)
        self._ids = np.full(points.max(initial=-1) + 1, -1, dtype=np.int64)  # code point -> id
        self._ids[points] = np.arange(len(chars))

    @classmethod
    def from_text(cls, text: str, eod: bool = False) -> CharTokenizer:
        if not text:
            raise ValueError("CharTokenizer: the corpus is empty")
        return cls("".join(sorted(set(text))), eod)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + self.eod

    @property
    def eod_id(self) -> int | None:
        """The end-of-document id, after every character's; None without one."""
        return len(self.chars) if self.eod else None

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """uint16 while ids fit (65,536 tokens), else uint32."""
        return np.uint16 if self.vocab_size <= 2**16 else np.uint32

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(
                f"characters not in the vocabulary: {''.join(unknown)!r}; "
                "use only characters that occur in the training corpus"
            )
        return [self.stoi[c] for c in text]

    def encode_array(self, text: str) -> np.ndarray:
        """``encode`` for a long text, vectorized: each code point looked up in a table
        indexed by code point, so a corpus is encoded at numpy's speed, not Python's."""
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if len(points) and points.max() >= len(self._ids):
            self.encode(text)  # raises, naming the characters outside the vocabulary
        ids = self._ids[points]
        if len(ids) and ids.min() < 0:
            self.encode(text)
        return ids.astype(self.dtype)

    def decode(self, ids) -> str:
        return "".join(EOD_TEXT if int(i) == self.eod_id else self.chars[int(i)] for i in ids)

    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes of the raw text each id stands for: the end-of-document token 0, so
        bits per byte leave it out of both the nats and the bytes."""
        sizes = [len(c.encode("utf-8")) for c in self.chars] + [0] * self.eod
        return np.array(sizes, dtype=np.int64)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars, "eod": self.eod}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        return cls(d["chars"], eod=d["eod"])


Tokenizer = Any  # CharTokenizer or nanomoe.bpe.BPETokenizer: encode, decode, token_bytes, ...
KINDS = ("char", "bpe")


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """The tokenizer a ``to_dict`` describes (a checkpoint's, or a tokenizer file's)."""
    if not isinstance(d, dict) or d.get("kind") not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}")
    if d["kind"] == "char":
        return CharTokenizer.from_dict(d)
    from nanomoe.bpe import BPETokenizer  # tiktoken only where BPE is used

    return BPETokenizer.from_dict(d)


def tokenizer_text(tok: Tokenizer) -> str:
    """The tokenizer file's text: the same tokenizer always gives the same bytes."""
    return json.dumps(tok.to_dict(), ensure_ascii=False, indent=1) + "\n"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_tokenizer(path: str | os.PathLike, fix: str) -> tuple[Tokenizer, str]:
    """(the tokenizer in a tokenizer file, the file's sha256); a missing or broken file is
    an InputError naming it and ``fix``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return tokenizer_from_dict(json.loads(text)), text_sha256(text)
    except FileNotFoundError:
        raise InputError(path, "not found", fix) from None
    except (ValueError, KeyError, TypeError) as err:  # JSON, UTF-8, or a field
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise InputError(path, f"not a tokenizer file ({reason})", fix) from None
