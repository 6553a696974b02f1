"""The mined F-gram table as a file: written with each F-gram spelled by its tokenizer, and
read back checked, so a table mined over another corpus or tokenizer fails by name instead
of silently aliasing ids. No torch here: the table is data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nanomoe.atomic import atomic_write_text
from nanomoe.config import InputError, read_json
from nanomoe.tokenizer import CharTokenizer, Tokenizer


@dataclass(frozen=True)
class Fgram:
    ids: tuple[int, ...]
    count: int
    score: int

    @property
    def n(self) -> int:
        return len(self.ids)


def _tokenizer(vocab: str | Tokenizer, vocab_size: int | None = None) -> Tokenizer:
    """A tokenizer, or the character tokenizer of ``vocab`` (its end token when
    ``vocab_size`` counts one more id than it has characters)."""
    if not isinstance(vocab, str):
        return vocab
    return CharTokenizer(vocab, eod=vocab_size == len(vocab) + 1)


def save_fgrams(
    path: str | os.PathLike,
    fgrams: list[Fgram],
    vocab: str | Tokenizer,
    meta: dict | None = None,
    vocab_size: int | None = None,
) -> None:
    """The table as JSON, each F-gram spelled by ``vocab``: the tokenizer it was mined over
    (or its characters, with ``vocab_size`` when the end token follows them)."""
    tok = _tokenizer(vocab, vocab_size)
    doc = {
        "vocab_size": tok.vocab_size,
        "score": "count * (n - 1)",
        **(meta or {}),
        "fgrams": [
            {"text": tok.decode(g.ids), "ids": list(g.ids), "count": g.count, "score": g.score}
            for g in fgrams
        ],
    }
    atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False))


MINE_FIX = "re-run the mine_fgrams stage (dvc repro mine_fgrams)"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_fgram(
    path: Path, i: int, entry: object, vocab_size: int, tok: Tokenizer | None
) -> Fgram:
    """Entry ``i`` of the table as an Fgram, or an InputError naming it."""

    def bad(problem: str) -> InputError:
        return InputError(path, f"fgrams[{i}]: {problem}", MINE_FIX)

    if not isinstance(entry, dict):
        raise bad("must be an object with ids, count and score")
    for key in ("ids", "count", "score"):
        if key not in entry:
            raise bad(f"{key}: is missing")
    ids, count, score = entry["ids"], entry["count"], entry["score"]
    if not isinstance(ids, list) or not all(_is_int(t) for t in ids):
        raise bad(f"ids: must be a list of integers, got {ids!r}")
    if len(ids) < 2:
        raise bad(f"ids: an F-gram has 2 or more characters, got {len(ids)}")
    if not all(0 <= t < vocab_size for t in ids):
        raise bad(f"ids: {ids} has an id outside the vocabulary [0, {vocab_size})")
    if not _is_int(count) or count < 1 or not _is_int(score):
        raise bad("count and score: must be integers, count >= 1")
    if tok is not None and tok.eod_id is not None and tok.eod_id in ids:
        raise bad(f"ids: {ids} holds the end-of-document id {tok.eod_id}; F-grams never span it")
    if tok is not None and "text" in entry:
        spelled = tok.decode(ids)
        if entry["text"] != spelled:
            problem = f"text {entry['text']!r}, but its ids spell {spelled!r} in its tokenizer"
            raise bad(f"{problem}: mined from another corpus")
    return Fgram(tuple(ids), count, score)


def load_fgrams(
    path: str | os.PathLike,
    max_n: int | None = None,
    vocab_size: int | None = None,
    chars: str | Tokenizer | None = None,
) -> list[Fgram]:
    """Mined F-grams from JSON, keeping only those of length <= ``max_n`` when given.

    The table is checked: valid JSON, every entry with integer ids (2 or more, each inside
    the vocabulary it was mined over) and counts. Pass meta.json's ``vocab_size`` and
    ``chars`` (or the tokenizer) to check also that it was mined over this vocabulary; an id out of
    range would silently alias onto another n-gram's key. Errors are InputErrors naming the
    file and the entry.
    """
    path = Path(path)
    doc = read_json(path, MINE_FIX)
    if not isinstance(doc, dict) or not isinstance(doc.get("fgrams"), list):
        raise InputError(path, "must be a JSON object with a list 'fgrams'", MINE_FIX)
    size = doc.get("vocab_size")
    if not _is_int(size) or size < 1:
        raise InputError(path, f"vocab_size: must be a positive integer, got {size!r}", MINE_FIX)
    tok = None if chars is None else _tokenizer(chars, vocab_size)
    theirs = vocab_size if vocab_size is not None or tok is None else tok.vocab_size
    if theirs is not None and theirs != size:
        problem = f"mined over a vocabulary of {size} tokens, meta.json has {theirs}"
        raise InputError(path, problem, MINE_FIX)
    mined = doc.get("mine_max_n")
    if max_n is not None and _is_int(mined) and mined < max_n:
        problem = f"mined up to n={mined}, shorter than the max_n={max_n} asked for"
        raise InputError(path, problem, MINE_FIX)
    out = [_checked_fgram(path, i, g, size, tok) for i, g in enumerate(doc["fgrams"])]
    return [g for g in out if max_n is None or g.n <= max_n]
