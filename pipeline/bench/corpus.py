"""``python -m pipeline.bench.corpus``: throughput and peak memory of download and prepare on a
generated sharded corpus, at several sizes.

For each size it writes a corpus of that many MB (several Parquet shards and one JSONL shard
of unique documents, in a scratch folder, never committed), points a throwaway project at it
with checksums, and runs ``python -m pipeline.download``, then ``pipeline.tokenizer`` and
``pipeline.prepare`` for each tokenizer
as child processes, timing each and reading its peak resident memory from the kernel
(``wait4``). The corpus is generated in another child, so that this process stays small: a
child starts as a copy of its parent, and the kernel's peak counts that copy too.

The goal: prepare's peak RSS at most 40% of the corpus, and a falling share as the corpus
grows, since memory is bounded by a chunk, not by the corpus.

    python -m pipeline.bench.corpus --mb 100 400
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.data.download import sha256_of  # streamed: this process must stay small

REPO = Path(__file__).resolve().parents[2]
WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "café naïve résumé Ωμέγα straße ☕ — “quoted” ‘single’ 東京 µs ±1.5 50% #tag @user"
).split()
SHARD_MB = 50  # each Parquet shard (FineWeb's are ~2 GB: a few are enough to show the trend)


def documents(rng: random.Random, n: int) -> list[str]:
    """``n`` unique documents of 200-6,000 characters (web pages' typical sizes)."""
    out = []
    for _ in range(n):
        k = rng.randint(40, 1200)
        out.append(f"{rng.getrandbits(64):x} " + " ".join(rng.choices(WORDS, k=k)) + ".\n")
    return out


def write_corpus(folder: Path, mb: int, seed: int = 0) -> list[Path]:
    """About ``mb`` MB of text: 85% in Parquet shards of SHARD_MB, the rest in one JSONL."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng, shards = random.Random(seed), []
    parquet_bytes, i = int(mb * 0.85 * 1e6), 0
    while parquet_bytes > 0:
        path, done = folder / f"part-{i:03}.parquet", 0
        with pq.ParquetWriter(path, pa.schema([("text", pa.string())])) as w:
            while done < min(SHARD_MB * 1e6, parquet_bytes):
                batch = documents(rng, 2000)  # ~6 MB: one row group
                w.write_table(pa.table({"text": batch}))
                done += sum(len(d.encode("utf-8")) for d in batch)
        shards.append(path)
        parquet_bytes, i = parquet_bytes - done, i + 1
    path, done = folder / "part-last.jsonl", 0
    with open(path, "w", encoding="utf-8") as f:
        while done < mb * 0.15 * 1e6:
            for d in documents(rng, 2000):
                f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
                done += len(d.encode("utf-8"))
    return [*shards, path]


def make_project(root: Path, shards: list[Path]) -> None:
    for name in ("nanomoe", "pipeline"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["url"] = [str(s) for s in shards]
    params["data"]["sha256"] = [sha256_of(s) for s in shards]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def run(root: Path, module: str, *args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of ``python -m module args`` in ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("NANOMOE_DATA_URL", None)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {module} failed in {root}; run it there to see why")
    print("   ", out.strip().splitlines()[-1][:110])
    return wall, usage.ru_maxrss / 1024  # kB on Linux


# download, then each tokenizer learned and its splits prepared
STAGES = [("download",)] + [
    (stage, "--tokenizer", kind) for kind in ("char", "bpe") for stage in ("tokenizer", "prepare")
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench.corpus", description=__doc__)
    ap.add_argument("--mb", type=int, nargs="+", default=[100, 400], help="corpus sizes, MB")
    ap.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--generate", nargs=2, metavar=("FOLDER", "MB"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.generate:  # the child that writes a corpus
        write_corpus(Path(a.generate[0]), int(a.generate[1]))
        return 0
    if min(a.mb) < 1:
        ap.error("--mb: sizes must be >= 1")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    rows = []
    with tempfile.TemporaryDirectory(dir=a.dir) as scratch:
        for mb in a.mb:
            folder = Path(scratch) / f"{mb}mb"
            (folder / "shards").mkdir(parents=True)
            gen = [sys.executable, "-m", "pipeline.bench.corpus", "--generate"]
            subprocess.run([*gen, str(folder / "shards"), str(mb)], check=True)
            shards = sorted((folder / "shards").iterdir())
            disk = sum(s.stat().st_size for s in shards) / 1e6
            make_project(folder / "project", shards)
            print(f"corpus {mb} MB of text: {len(shards)} shards, {disk:.0f} MB on disk")
            for stage, *args in STAGES:
                wall, rss = run(folder / "project", f"pipeline.{stage}", *args)
                rows.append((mb, disk, " ".join([stage, *args[1:]]), wall, rss))
            shutil.rmtree(folder)
    head = ("text MB", "disk MB", "stage", "s", "disk MB/s", "text MB/s", "peak RSS MB")
    print("\n" + " ".join(f"{h:>11}" for h in head) + "    RSS/text    RSS/disk")
    for mb, disk, stage, wall, rss in rows:
        cells = (mb, f"{disk:.0f}", stage, f"{wall:.1f}", f"{disk / wall:.0f}", f"{mb / wall:.1f}")
        print(
            " ".join(
                f"{c:>11}" for c in (*cells, f"{rss:.0f}", f"{rss / mb:.1%}", f"{rss / disk:.1%}")
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
