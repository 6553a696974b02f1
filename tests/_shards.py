"""Small sharded corpora for the tests: documents written as Parquet, JSONL (plain and
gzipped) and text shards, the formats ``data.url`` takes."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Not ASCII, and of very different lengths: nothing may assume either.
WORDS = "the cat sat on a mat — café naïve Ωμέγα dog ran far ☕ ℵ".split()


def make_documents(n: int, seed: int = 0, longest: int = 80) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, longest))) + rng.choice(".\n")
        for _ in range(n)
    ]


def write_parquet(path: Path, docs: list[str], row_group_size: int = 16, **extra) -> Path:
    columns = {"text": docs, **{k: v for k, v in extra.items()}}
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    lines = "".join(
        json.dumps({field: d, "id": i}, ensure_ascii=False) + "\n" for i, d in enumerate(docs)
    )
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(lines)
    return path


def write_text(path: Path, doc: str) -> Path:
    path.write_text(doc, encoding="utf-8")
    return path


def sharded_corpus(folder: Path, docs: list[str]) -> list[Path]:
    """``docs`` across four shards: Parquet, JSONL, gzipped JSONL, and the last one a text
    file; in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    a, b = len(docs) // 2, 3 * len(docs) // 4
    return [
        write_parquet(folder / "part-0.parquet", docs[:a]),
        write_jsonl(folder / "part-1.jsonl", docs[a:b]),
        write_jsonl(folder / "part-2.jsonl.gz", docs[b:-1]),
        write_text(folder / "part-3.txt", docs[-1]),
    ]
