"""A throwaway project on a sharded corpus (Parquet, JSONL, gzipped JSONL and a text file):
``dvc repro`` downloads, learns both tokenizers, prepares with end-of-document tokens, mines
F-grams that never span them and trains an F-gram cell of each tokenizer; a shard added later
is the only one fetched."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess

import numpy as np
import pytest
import yaml
from _project import env_for, make_project, run_module, tail
from _shards import make_documents, sharded_corpus, write_jsonl

DOCS = make_documents(240, seed=2)


def set_params(root, mutate) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutate(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def point_at(root, shards) -> None:
    def mutate(params):
        params["data"]["url"] = [s.as_uri() for s in shards]
        params["data"]["sha256"] = [hashlib.sha256(s.read_bytes()).hexdigest() for s in shards]

    set_params(root, mutate)


def dvc(root, *args):
    return run_module(root, "dvc", *args, env=env_for(root))


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("sharded"))
    shards = sharded_corpus(root.parent / "shards", DOCS)
    point_at(root, shards)
    grid = {"rope": [True], "moe": [False], "fgram": [True], "tokenizer": ["char", "bpe"]}

    def mutate(params):
        params["grid"] = grid
        params["tokenizer"]["vocab_size"] = 300

    set_params(root, mutate)
    assert run_module(root, "pipeline.grid").returncode == 0
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert dvc(root, "init", "-q").returncode == 0
    first = dvc(root, "repro")
    assert first.returncode == 0, tail(first)
    return root, shards, first


def test_a_sharded_corpus_trains_an_fgram_cell_of_each_tokenizer(repro):
    """F-grams on: the cells that read the mined table of documents with end tokens (the
    F-gram-off cells would prove nothing more here)."""
    root, _, first = repro
    assert first.stdout.count("Running stage 'train") == 2
    for tok in ("char", "bpe"):
        name = f"rope-true_moe-false_fgram-true_tokenizer-{tok}_seed-1337"
        cell = root / "experiments/ablation" / name
        metrics = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
        assert math.isfinite(metrics["final_val_bpb"]) and metrics["steps"] == 12
        assert (cell / "sample.txt").read_text(encoding="utf-8")


def test_char_tokens_are_the_corpus_characters_plus_one_end_token_per_document(repro):
    root, _, _ = repro
    for tok in ("char", "bpe"):
        meta = json.loads((root / f"data/{tok}/prepared/meta.json").read_text(encoding="utf-8"))
        if tok == "char":
            assert meta["n_train"] + meta["n_val"] == sum(map(len, DOCS)) + len(DOCS)
        ids = np.concatenate(
            [
                np.fromfile(root / f"data/{tok}/prepared/{s}.bin", dtype=meta["dtype"])
                for s in ("train", "val")
            ]
        )
        assert (ids == meta["eod"]).sum() == len(DOCS)


@pytest.mark.parametrize("tok", ["char", "bpe"])
def test_no_mined_fgram_holds_the_end_token(repro, tok):
    root, _, _ = repro
    meta = json.loads((root / f"data/{tok}/prepared/meta.json").read_text(encoding="utf-8"))
    table = json.loads((root / f"data/{tok}/fgrams.json").read_text(encoding="utf-8"))
    assert table["fgrams"] and table["vocab_size"] == meta["vocab_size"]
    assert all(meta["eod"] not in g["ids"] for g in table["fgrams"])


def test_a_shard_added_to_data_url_is_the_only_one_fetched(repro, tmp_path):
    """data/raw/ is persist: true, so DVC leaves the shards there when download runs again.
    Mutation killed: persist dropped from dvc.yaml (DVC deletes data/raw/ first and every
    shard is fetched again)."""
    root, shards, _ = repro
    extra = write_jsonl(root.parent / "shards/part-4.jsonl", make_documents(20, seed=9))
    point_at(root, [*shards, extra])
    again = dvc(root, "repro", "download")
    assert again.returncode == 0, tail(again)
    fetched = [line for line in again.stdout.splitlines() if line.startswith("downloaded")]
    kept = [line for line in again.stdout.splitlines() if line.startswith("already there")]
    assert len(fetched) == 1 and "part-4.jsonl" in fetched[0], again.stdout
    assert len(kept) == len(shards)
