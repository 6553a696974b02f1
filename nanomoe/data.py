"""Binary train/val splits and batch sampling, over any tokenizer's ids (characters or BPE).

``prepare`` splits one text in memory with the character tokenizer, for a notebook; the
pipeline's prepare stage streams a corpus of many documents to the same files
(pipeline/data/prepare.py). meta.json says what the ids mean: the characters, and ``eod``, the
end-of-document id, when the corpus has documents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from nanomoe.atomic import atomic_write_bytes, atomic_write_text
from nanomoe.config import InputError, read_json
from nanomoe.tokenizer import CharTokenizer


def prepare(text: str, out_dir: str | os.PathLike, val_fraction: float = 0.1) -> dict:
    """Tokenize ``text`` and write ``train.bin``, ``val.bin`` and ``meta.json`` to ``out_dir``.

    The split is contiguous (first 90% train, last 10% val), as in nanoGPT, so validation
    text is never seen in training.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction: must be in (0, 1)")
    tok = CharTokenizer.from_text(text)
    ids = np.array(tok.encode(text), dtype=tok.dtype)
    n_val = int(round(len(ids) * val_fraction))
    n_train = len(ids) - n_val
    if n_train < 2 or n_val < 2:
        raise ValueError(f"corpus of {len(ids)} characters is too small to split")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "train.bin", ids[:n_train].tobytes())
    atomic_write_bytes(out / "val.bin", ids[n_train:].tobytes())
    meta = {
        "vocab_size": tok.vocab_size,
        "chars": tok.chars,
        "dtype": np.dtype(tok.dtype).name,
        "n_train": int(n_train),
        "n_val": int(n_val),
    }
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False))
    return meta


PREPARE_FIX = "re-run the prepare stage (dvc repro prepare)"
DTYPES = ("uint16", "uint32")  # the token dtypes prepare writes
_META_TYPES = {"vocab_size": int, "dtype": str, "n_train": int, "n_val": int}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_meta(data_dir: str | os.PathLike) -> dict:
    """meta.json of a prepared folder, checked: every field present with its type, a
    vocabulary of distinct characters that ``vocab_size`` counts, a dtype prepare writes.
    Anything else raises an InputError naming the file, so no split is read the wrong way."""
    path = Path(data_dir) / "meta.json"
    meta = read_json(path, PREPARE_FIX)
    if not isinstance(meta, dict):
        raise InputError(path, "must be a JSON object", PREPARE_FIX)
    tokenizer = meta.get("tokenizer", "char")
    if tokenizer not in ("char", "bpe"):
        raise InputError(path, f"tokenizer: must be char or bpe, got {tokenizer!r}", PREPARE_FIX)
    types = {"chars": str, **_META_TYPES} if tokenizer == "char" else _META_TYPES
    for key, kind in types.items():
        if key not in meta:
            raise InputError(path, f"{key}: is missing", PREPARE_FIX)
        if not (_is_int(meta[key]) if kind is int else isinstance(meta[key], kind)):
            bad = f"{key}: must be {kind.__name__}, got {meta[key]!r}"
            raise InputError(path, bad, PREPARE_FIX)
    size, dtype = meta["vocab_size"], meta["dtype"]
    if tokenizer == "char":
        _check_chars(path, meta)
    elif meta.get("eod") not in (None, size - 1):
        bad = f"eod: must be {size - 1}, the last id, got {meta['eod']!r}"
        raise InputError(path, bad, PREPARE_FIX)
    if dtype not in DTYPES:
        bad = f"dtype {dtype!r} is not a token dtype prepare writes ({', '.join(DTYPES)})"
        raise InputError(path, bad, PREPARE_FIX)
    if size - 1 > np.iinfo(dtype).max:
        raise InputError(path, f"dtype {dtype} cannot hold {size} token ids", PREPARE_FIX)
    for key in ("n_train", "n_val"):
        if meta[key] < 2:
            raise InputError(path, f"{key}: must be >= 2, got {meta[key]}", PREPARE_FIX)
    return meta


def _check_chars(path: Path, meta: dict) -> None:
    """A char vocabulary: distinct characters, the end id after them, counted by vocab_size."""
    chars, size, eod = meta["chars"], meta["vocab_size"], meta.get("eod")
    if not chars or len(set(chars)) != len(chars):
        raise InputError(path, "chars: must be the corpus's distinct characters", PREPARE_FIX)
    if eod is not None and eod != len(chars):
        bad = f"eod: must be {len(chars)}, the id after the characters, got {eod!r}"
        raise InputError(path, bad, PREPARE_FIX)
    if size != len(chars) + (eod is not None):
        extra = " and the end-of-document token" if eod is not None else ""
        bad = f"vocab_size={size}, but chars holds {len(chars)} characters{extra}"
        raise InputError(path, bad, PREPARE_FIX)


def load_tokenizer(data_dir: str | os.PathLike) -> CharTokenizer:
    meta = load_meta(data_dir)
    return CharTokenizer(meta["chars"], eod=meta.get("eod") is not None)


def load_split(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """Memory-map ``train.bin`` or ``val.bin``, checked against meta.json: its size is
    exactly ``n_<split>`` tokens of meta's dtype and its largest id is in the vocabulary, so
    a truncated, padded or mis-typed file fails here, naming itself, instead of training."""
    if split not in ("train", "val"):
        raise ValueError(f"split: must be 'train' or 'val', got {split!r}")
    meta = load_meta(data_dir)
    path = Path(data_dir) / f"{split}.bin"
    dtype, expected = np.dtype(meta["dtype"]), meta[f"n_{split}"]
    if not path.exists():
        raise InputError(path, "not found", PREPARE_FIX)
    if not path.is_file():
        raise InputError(path, "is not a file", PREPARE_FIX)
    size = path.stat().st_size
    if size % dtype.itemsize:
        bad = f"{size} bytes is not a whole number of {dtype.name} tokens ({dtype.itemsize} bytes)"
        raise InputError(path, bad, PREPARE_FIX)
    count = size // dtype.itemsize
    if count != expected:
        bad = f"{size} bytes is {count} tokens, meta.json says n_{split}={expected}"
        raise InputError(path, bad, PREPARE_FIX)
    data = np.memmap(path, dtype=dtype, mode="r")
    top = int(data.max())  # one pass over the file: cheap next to a single training step
    if top >= meta["vocab_size"]:
        bad = f"holds token id {top}, outside meta.json's vocab_size={meta['vocab_size']}"
        raise InputError(path, bad, PREPARE_FIX)
    return data


def get_batch(
    data: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``block_size`` tokens and their next-token targets, as int64."""
    if len(data) <= block_size:
        raise ValueError(f"split has {len(data)} tokens; needs more than block_size={block_size}")
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator).numpy()
    window = np.asarray(data)[ix[:, None] + np.arange(block_size + 1)].astype(np.int64)
    xy = torch.from_numpy(window)
    return xy[:, :-1], xy[:, 1:]


def iter_full_split(data: np.ndarray, block_size: int, batch_size: int):
    """Every token of a split exactly once as a target, in non-overlapping windows.

    The tail that does not fill a whole window is covered by one last window aligned to the
    end; its targets that earlier windows already scored are masked with -1 (ignored).
    """
    arr = np.asarray(data).astype(np.int64)
    n = len(arr) - 1  # (input, target) pairs
    width = min(block_size, n)
    starts = np.arange(0, n - width + 1, width)
    skip = np.zeros(len(starts), dtype=np.int64)
    covered = len(starts) * width
    if covered < n:
        starts = np.append(starts, n - width)
        skip = np.append(skip, covered - (n - width))
    for b in range(0, len(starts), batch_size):
        xy = torch.from_numpy(arr[starts[b : b + batch_size, None] + np.arange(width + 1)])
        x, y = xy[:, :-1], xy[:, 1:].clone()
        y[torch.arange(width) < torch.from_numpy(skip[b : b + batch_size])[:, None]] = -1
        yield x, y
