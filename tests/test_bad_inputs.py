"""Every bad input a user can cause ends as one line, ``error: <file or key>: ...; <fix>``, on
stderr with exit code 2 and no traceback, and writes nothing: the good files around it are
byte-identical afterwards.

Two tables. ``COMMANDS``: each row breaks one thing in a throwaway project (a copy of one
prepared once per module) and runs the real command in a subprocess. ``FILES``: bad files fed
straight to the library's loaders, where a subprocess would add nothing but seconds; each
must raise an InputError whose one-line message starts with the file and says how to fix it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from _project import env_for, make_project, run_module

from nanomoe.config import GPTConfig, InputError
from nanomoe.data import load_meta, load_split
from nanomoe.fgram import load_fgrams
from nanomoe.sample import read_checkpoint
from nanomoe.tokenizer import CharTokenizer, tokenizer_from_dict, tokenizer_text
from pipeline.stage import os_error_line

TRAIN = (
    "pipeline.train", "--rope", "true", "--moe", "false", "--fgram", "true",
    "--tokenizer", "char", "--seed", "1",
)  # fmt: skip
DENSE = (*TRAIN[:5], "--fgram", "false", *TRAIN[7:])  # reads no F-gram table
CHAR = ("--tokenizer", "char")  # the data stages' instance a char cell reads
PREPARE = ("pipeline.prepare", *CHAR)
MINE = ("pipeline.mine_fgrams", *CHAR)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A tiny project after download, and the char tokenizer, prepare and mine_fgrams
    (in-process: fast)."""
    from pipeline.data import download, mine_fgrams, prepare, tokenizer

    root = make_project(tmp_path_factory.mktemp("prepared"))
    with contextlib.chdir(root):
        assert download.main([]) == 0
        for stage in (tokenizer, prepare, mine_fgrams):
            assert stage.main(list(CHAR)) == 0
    return root


@pytest.fixture
def project(prepared, tmp_path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(prepared, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes (None for a folder) under ``root``, code caches aside."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if "__pycache__" not in p.parts
    }


# --- ways to break a project: each returns the environment the command runs with ----------


def edit_params(mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
        mutate(params)
        text = yaml.safe_dump(params, sort_keys=False, allow_unicode=True)
        (root / "params.yaml").write_text(text, encoding="utf-8")

    return setup


def params_text(old: str, new: str) -> Callable[[Path], None]:
    """Edit params.yaml as text, for values YAML would not dump as a user writes them."""

    def setup(root: Path) -> None:
        text = (root / "params.yaml").read_text(encoding="utf-8")
        assert re.search(old, text, flags=re.M), old
        (root / "params.yaml").write_text(re.sub(old, new, text, count=1, flags=re.M))

    return setup


def write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / rel
        if path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return setup


def remove(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def make_dir(rel: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / rel).unlink()
        (root / rel).mkdir()

    return setup


def data_url(name: str, data: bytes, sha256_null: bool = True) -> Callable[[Path], dict]:
    """NANOMOE_DATA_URL pointing at a file holding ``data``."""

    def setup(root: Path) -> dict:
        (root.parent / name).write_bytes(data)
        if sha256_null:
            edit_params(lambda p: p["data"].update(sha256=None))(root)
        return {"NANOMOE_DATA_URL": str(root.parent / name)}

    return setup


def write_parquet_columns(path: Path, **columns) -> None:
    pq.write_table(pa.table(columns), path)


def shard_in_raw(name: str, content: bytes | Callable[[Path], None]) -> Callable[[Path], None]:
    """data/raw/ holding this one shard instead of the corpus, as download leaves it."""

    def setup(root: Path) -> None:
        (root / "data/raw/corpus.txt").unlink()
        if isinstance(content, bytes):
            (root / "data/raw" / name).write_bytes(content)
        else:
            content(root / "data/raw" / name)

    return setup


def edit_json(rel: str, mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        doc = json.loads((root / rel).read_text(encoding="utf-8"))
        mutate(doc)
        (root / rel).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")

    return setup


def truncate(rel: str, n_bytes: int) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / rel
        path.write_bytes(path.read_bytes()[:n_bytes])

    return setup


def save(rel: str, obj: object) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, root / rel)

    return setup


@dataclass
class Row:
    id: str
    command: tuple[str, ...]
    setup: Callable[[Path], dict | None]
    names: str  # the file or key the line must name before its first ";"
    fix: str  # what the line must say about fixing it
    marks: list = field(default_factory=list)


SAMPLE = ("nanomoe.sample", "--checkpoint", "ckpt.pt", "--prompt", "a")
CELL = "experiments/ablation/rope-true_moe-true_fgram-true_tokenizer-char_seed-1"


def _tokenizer_of_another_corpus(root: Path) -> None:
    """data/char/tokenizer.json re-learned from a corpus whose last character differs (the
    tokenizer stage re-run without prepare): as many ids, other characters."""
    path = root / "data/char/tokenizer.json"
    tok = tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
    assert "€" not in tok.chars
    other = CharTokenizer(tok.chars[:-1] + "€", eod=tok.eod)
    path.write_text(tokenizer_text(other), encoding="utf-8")


COMMANDS = [
    # params.yaml, read by every stage: through the cheapest one
    Row("params-not-yaml", ("pipeline.download",), write("params.yaml", "data: [1, 2\n"),
        "params.yaml", "line 2"),
    Row("params-a-list", ("pipeline.download",), write("params.yaml", "- data\n- model\n"),
        "params.yaml", "mapping of sections"),
    Row("params-not-utf8", ("pipeline.download",), write("params.yaml", b"seeds: [1]\n\xff\xfe"),
        "params.yaml", "UTF-8"),
    Row("unknown-key", ("pipeline.download",), edit_params(lambda p: p["model"].update(n_layers=2)),
        "params.yaml: model", "keys are"),
    Row("seeds-a-bool", ("pipeline.download",), edit_params(lambda p: p.update(seeds=[True])),
        "params.yaml: seeds", "list of integers"),
    Row("sample-top-k-negative", ("pipeline.download",),
        edit_params(lambda p: p["sample"].update(top_k=-1)), "params.yaml: sample.top_k",
        "0 (or null) for no top-k"),
    Row("sample-temperature-0", ("pipeline.download",),
        edit_params(lambda p: p["sample"].update(temperature=0)),
        "params.yaml: sample.temperature", "must be a number > 0"),
    Row("float-with-a-typo", ("pipeline.download",),
        params_text(r"^  learning_rate: .*$", "  learning_rate: 1e-3x"),
        "params.yaml: train.learning_rate", "must be float"),
    Row("exponent-in-an-int-field", ("pipeline.download",),
        params_text(r"^  max_iters: .*$", "  max_iters: 1e3"),
        "params.yaml: train.max_iters", "must be int"),
    # Kills: TokenizerParams' lower bound on vocab_size dropped (a BPE without every byte)
    Row("tokenizer-vocab-size-256-below-the-bytes-and-end-token", ("pipeline.download",),
        edit_params(lambda p: p["tokenizer"].update(vocab_size=256)),
        "params.yaml: tokenizer.vocab_size", "must be in [257, 65536]"),
    # Kills: TokenizerParams' upper bound on vocab_size dropped (ids past uint16's files)
    Row("tokenizer-vocab-size-65537-past-uint16", ("pipeline.download",),
        edit_params(lambda p: p["tokenizer"].update(vocab_size=2**16 + 1)),
        "params.yaml: tokenizer.vocab_size", "must be in [257, 65536]"),
    # Kills: read_grid's level check skipped (an unknown tokenizer silently dropped)
    Row("grid-tokenizer-unknown-wordpiece", ("pipeline.download",),
        edit_params(lambda p: p["grid"].update(tokenizer=["char", "wordpiece"])),
        "params.yaml: grid.tokenizer", "its levels are char and bpe"),
    # Kills: the reader's duplicate-key check removed (PyYAML keeps the last one silently)
    Row("params-key-written-twice", ("pipeline.download",),
        params_text(r"^  max_iters: .*$", "  max_iters: 12\n  max_iters: 3"),
        "params.yaml: train.max_iters", "written twice, at lines"),
    # Kills: read_tokens' block check dropped (the trainer's traceback comes back)
    Row("val-split-shorter-than-one-block", DENSE,
        edit_params(lambda p: p["model"].update(block_size=4096)),
        "data/char/prepared", "the val split has"),
    # download: nothing is written unless the new shard is good
    Row("data-url-unreachable", ("pipeline.download",),
        edit_params(lambda p: p["data"].update(url="file:///nonexistent/input.txt")),
        "nonexistent/input.txt", "reachable mirror"),
    Row("data-url-empty-file", ("pipeline.download",), data_url("empty.txt", b""),
        "empty.txt", "point data.url"),
    Row("corpus-not-utf8", ("pipeline.download",), data_url("latin1.txt", b"caf\xe9\n"),
        "latin1.txt", "UTF-8"),
    Row("shard-not-utf8", ("pipeline.download",),
        data_url("docs.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n'),
        "docs.jsonl", "convert the shard to UTF-8"),
    Row("empty-shard", ("pipeline.download",), data_url("docs.jsonl", b""),
        "docs.jsonl", "is empty"),
    Row("checksum-mismatch", ("pipeline.download",),
        data_url("other.txt", b"another corpus\n", sha256_null=False),
        "other.txt", "data.sha256"),
    Row("checksum-list-of-the-wrong-length", ("pipeline.download",),
        edit_params(lambda p: p["data"].update(
            url=["https://example.org/a.jsonl", "https://example.org/b.parquet"],
            sha256=["a" * 64] * 3)),
        "params.yaml: data.sha256", "one per shard"),
    # prepare: the shards in data/raw/, each read through before anything is written
    Row("raw-missing", PREPARE, remove("data/raw/corpus.txt"),
        "data/raw", "dvc repro download"),
    Row("raw-not-utf8", PREPARE, write("data/raw/corpus.txt", b"caf\xe9\n" * 50),
        "data/raw/corpus.txt", "UTF-8"),
    Row("text-column-missing", PREPARE,
        shard_in_raw("docs.parquet", lambda p: write_parquet_columns(p, body=["a", "b"])),
        "data/raw/docs.parquet", "data.text_field"),
    Row("text-column-not-strings", PREPARE,
        shard_in_raw("docs.parquet", lambda p: write_parquet_columns(p, text=[1, 2])),
        "data/raw/docs.parquet", "data.text_field to a string column"),
    Row("jsonl-row-not-a-string", PREPARE,
        shard_in_raw("docs.jsonl", b'{"text": "ok"}\n{"text": 5}\n'),
        "data/raw/docs.jsonl: line 2", "fix the row"),
    Row("parquet-row-null", PREPARE,
        shard_in_raw("docs.parquet", lambda p: write_parquet_columns(p, text=["ok", None])),
        "data/raw/docs.parquet: row 2", "fill it"),
    Row("empty-parquet-shard", PREPARE,
        shard_in_raw("docs.parquet", lambda p: write_parquet_columns(p, text=pa.array([], "str"))),
        "data/raw/docs.parquet", "holds no text"),
    Row("corrupt-parquet", PREPARE,
        shard_in_raw("docs.parquet", b"PAR1 not really a parquet file PAR1"),
        "data/raw/docs.parquet", "fetch it again"),
    Row("jsonl-line-not-json", PREPARE,
        shard_in_raw("docs.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": oops}\n'),
        "data/raw/docs.jsonl: line 3", "fix that line"),
    Row("output-is-a-directory", PREPARE, make_dir("data/char/prepared/train.bin"),
        "data/char/prepared/train.bin", "folder is in the way"),
    # prepare encodes with the tokenizer stage's file. Kills: Layout.require naming the
    # matrix stage without its instance (`dvc repro tokenizer` would learn every tokenizer)
    Row("tokenizer-json-missing", PREPARE, remove("data/char/tokenizer.json"),
        "data/char/tokenizer.json", "dvc repro tokenizer@char"),
    # Kills: KeyError left out of read_tokenizer's except (a missing field: a traceback)
    Row("tokenizer-json-without-its-chars", PREPARE,
        edit_json("data/char/tokenizer.json", lambda d: d.pop("chars")),
        "data/char/tokenizer.json", "dvc repro tokenizer@char"),
    # mine_fgrams reads the prepared data
    Row("train-bin-truncated", MINE, truncate("data/char/prepared/train.bin", 20),
        "data/char/prepared/train.bin", "dvc repro prepare"),
    Row("meta-json-garbage", MINE,
        write("data/char/prepared/meta.json", "{'vocab': oops"),
        "data/char/prepared/meta.json", "dvc repro prepare"),
    Row("meta-json-dtype-uint8", MINE,
        edit_json("data/char/prepared/meta.json", lambda m: m.update(dtype="uint8")),
        "data/char/prepared/meta.json", "dvc repro prepare"),
    # train reads fgrams.json
    Row("fgrams-json-garbage", TRAIN, write("data/char/fgrams.json", "not json at all"),
        "data/char/fgrams.json", "dvc repro mine_fgrams"),
    Row("fgrams-json-missing", TRAIN, remove("data/char/fgrams.json"),
        "data/char/fgrams.json", "dvc repro mine_fgrams"),
    Row("fgrams-of-another-vocabulary", TRAIN,
        edit_json("data/char/fgrams.json", lambda d: d.update(vocab_size=d["vocab_size"] + 5)),
        "data/char/fgrams.json", "dvc repro mine_fgrams"),
    # Kills: read_tokens' tokenizer_sha256 check dropped (a cell without F-grams, whose table
    # would catch it too, trains on ids the tokenizer now spells otherwise)
    Row("tokenizer-json-not-the-one-prepare-encoded-with", DENSE, _tokenizer_of_another_corpus,
        "data/char/tokenizer.json", "dvc repro prepare@char"),
    # Kills: prepare_cell's prompt check skipped for char cells (it fails after training)
    Row("char-cell-sample-prompt-outside-the-corpus", TRAIN,
        edit_params(lambda p: p["sample"].update(prompt="café €")),
        "params.yaml: sample.prompt", "use only the corpus's characters"),
    # nanomoe.sample
    Row("checkpoint-garbage", SAMPLE, write("ckpt.pt", b"\x80\x02not a checkpoint" * 20),
        "ckpt.pt", "--checkpoint"),
    Row("checkpoint-a-directory", SAMPLE, lambda root: (root / "ckpt.pt").mkdir(),
        "ckpt.pt", "is a folder"),
    Row("checkpoint-missing-keys", SAMPLE, save("ckpt.pt", {"model": {}, "chars": "ab"}),
        "ckpt.pt", "has no 'model_config'"),
    # report reads what the train stages wrote
    Row("metrics-json-garbage", ("pipeline.report",),
        write(f"{CELL}/metrics.json", "{"),
        "metrics.json", "dvc repro"),
]  # fmt: skip


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=r.marks) for r in COMMANDS])
def test_a_bad_input_stops_the_command_in_one_line_and_changes_nothing(project, row):
    env = {**env_for(project), **(row.setup(project) or {})}
    before = snapshot(project)
    out = run_module(project, *row.command, env=env)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and row.names in lines[0].split(";")[0], lines[0]
    assert row.fix in lines[0], lines[0]
    assert snapshot(project) == before


# --- bad files, straight into the loaders --------------------------------------------------


def _fgram_entry(doc: dict, **entry) -> None:
    doc["fgrams"][0] = {**doc["fgrams"][0], **entry}


def _first_fgram_without(key: str) -> Callable[[dict], None]:
    return lambda doc: doc["fgrams"][0].pop(key)


def _set_max_id(rel: str, root: Path) -> None:
    ids = np.fromfile(root / rel, dtype=np.uint16)
    ids[-1] = load_meta(root / "data/char/prepared")["vocab_size"]
    ids.tofile(root / rel)


def _load_fgrams_for(root: Path):
    meta = load_meta(root / "data/char/prepared")
    return load_fgrams(root / "data/char/fgrams.json", 3, meta["vocab_size"], meta["chars"])


def _other_chars(doc: dict) -> None:
    doc["fgrams"][0]["text"] = "zz"


def _truncated_checkpoint(root: Path) -> None:
    torch.save({"model": torch.zeros(4096)}, root / "c.pt")
    truncate("c.pt", 900)(root)


def _weights_that_do_not_fit(root: Path) -> None:
    torch.save({"model": {}, "model_config": GPTConfig().to_dict(), "chars": "ab"}, root / "c.pt")


FILES = [
    ("train-bin-odd-size", lambda r: (r / "data/char/prepared/train.bin").open("ab").write(b"\0"),
     lambda r: load_split(r / "data/char/prepared", "train"), "data/char/prepared/train.bin",
     "whole number"),
    ("meta-json-missing-n-val", edit_json("data/char/prepared/meta.json", lambda m: m.pop("n_val")),
     lambda r: load_split(r / "data/char/prepared", "val"), "data/char/prepared/meta.json",
     "n_val"),
    ("meta-json-vocab-size-not-chars",
     edit_json("data/char/prepared/meta.json", lambda m: m.update(vocab_size=m["vocab_size"] - 1)),
     lambda r: load_meta(r / "data/char/prepared"), "data/char/prepared/meta.json", "vocab_size"),
    ("val-bin-id-outside-vocab", lambda r: _set_max_id("data/char/prepared/val.bin", r),
     lambda r: load_split(r / "data/char/prepared", "val"), "data/char/prepared/val.bin",
     "token id"),
    ("fgram-id-equal-to-vocab-size",  # (0, 65) with 65 characters would alias onto (1, 0)
     edit_json("data/char/fgrams.json", lambda d: _fgram_entry(d, ids=[0, d["vocab_size"]])),
     _load_fgrams_for, "data/char/fgrams.json", "outside the vocabulary"),
    ("fgram-entry-missing-count", edit_json("data/char/fgrams.json", _first_fgram_without("count")),
     _load_fgrams_for, "data/char/fgrams.json", "count: is missing"),
    ("fgram-of-one-character",
     edit_json("data/char/fgrams.json", lambda d: _fgram_entry(d, ids=[3])),
     _load_fgrams_for, "data/char/fgrams.json", "2 or more"),
    ("fgram-text-of-another-corpus", edit_json("data/char/fgrams.json", _other_chars),
     _load_fgrams_for, "data/char/fgrams.json", "another corpus"),
    ("fgrams-of-another-vocab-size",
     edit_json("data/char/fgrams.json", lambda d: d.update(vocab_size=d["vocab_size"] + 5)),
     _load_fgrams_for, "data/char/fgrams.json", "mined over a vocabulary of"),
    ("fgrams-mined-shorter-than-asked",
     edit_json("data/char/fgrams.json", lambda d: d.update(mine_max_n=2)),
     _load_fgrams_for, "data/char/fgrams.json", "mined up to n=2"),
    ("checkpoint-truncated", _truncated_checkpoint,
     lambda r: read_checkpoint(r / "c.pt"), "c.pt", "truncated"),
    ("checkpoint-weights-do-not-fit", _weights_that_do_not_fit,
     lambda r: read_checkpoint(r / "c.pt"), "c.pt", "do not fit"),
]  # fmt: skip


@pytest.mark.parametrize(
    "setup, load, names, fix", [f[1:] for f in FILES], ids=[f[0] for f in FILES]
)
def test_a_bad_file_raises_one_line_naming_it_and_the_fix(
    project, monkeypatch, setup, load, names, fix
):
    monkeypatch.chdir(project)  # paths in messages are relative to the working directory
    setup(project)
    with pytest.raises(InputError) as err:
        load(project)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{names}: "), message
    assert fix in message and "; " in message, message


def test_a_write_that_fails_names_the_destination_not_the_temp_file(project, monkeypatch):
    from nanomoe.atomic import atomic_write_text

    monkeypatch.chdir(project)
    target = project / "data" / "char" / "fgrams.json"
    target.unlink()
    target.mkdir()
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "{}")
    assert err.value.filename == str(target)
    line = os_error_line(err.value)
    assert line.startswith("data/char/fgrams.json: ") and "folder is in the way" in line
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]  # cleaned up
