"""Character tokenizer, binary train/val splits and batch sampling.

The vocabulary is whatever characters the corpus holds (any Unicode), sorted by code point,
so the same corpus always gives the same ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from nanomoe.atomic import atomic_write_bytes, atomic_write_text


class CharTokenizer:
    def __init__(self, chars: str) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: vocabulary has repeated characters")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise ValueError("CharTokenizer: the corpus is empty")
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """uint16 while ids fit (65,536 characters), else uint32."""
        return np.uint16 if self.vocab_size <= 2**16 else np.uint32

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(
                f"characters not in the vocabulary: {''.join(unknown)!r}; "
                "use only characters that occur in the training corpus"
            )
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


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


def load_meta(data_dir: str | os.PathLike) -> dict:
    return json.loads((Path(data_dir) / "meta.json").read_text(encoding="utf-8"))


def load_tokenizer(data_dir: str | os.PathLike) -> CharTokenizer:
    return CharTokenizer(load_meta(data_dir)["chars"])


def load_split(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """Memory-map ``train.bin`` or ``val.bin``."""
    meta = load_meta(data_dir)
    return np.memmap(Path(data_dir) / f"{split}.bin", dtype=meta["dtype"], mode="r")


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
