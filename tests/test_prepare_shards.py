"""The streaming tokenizer and prepare stages: whole documents in each split, one
end-of-document token after each, one text file cut as before, a BPE learned from the train
split only and streamed to the ids it gives whole, and no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _project import CORPUS, REPO, make_project
from _shards import make_documents, sharded_corpus, write_jsonl, write_text

import pipeline.data.shards
from nanomoe.data import prepare as prepare_in_memory
from nanomoe.tokenizer import CharTokenizer, read_tokenizer
from pipeline.data.prepare import prepare as prepare_stage
from pipeline.data.split import Splitter, doc_hash, is_val
from pipeline.data.tokenizer import write_tokenizer
from pipeline.layout import Layout
from pipeline.params.sections import TokenizerParams
from pipeline.sources import DataParams
from pipeline.stage import StageError


def data(**kw) -> DataParams:
    return DataParams(url="https://example.org/x.txt", sha256=None, **kw)


def prepare(layout: Layout, d: DataParams, kind: str = "char", vocab_size: int = 300):
    """The tokenizer stage, then the prepare stage, of ``kind``."""
    write_tokenizer(layout, d, TokenizerParams(vocab_size=vocab_size), kind)
    return prepare_stage(layout, d, kind)


@pytest.fixture
def project(tmp_path):
    root = make_project(tmp_path / "project")
    (root / "data/raw").mkdir(parents=True)
    return root


def splits(root) -> tuple[dict, dict[str, list[str]]]:
    """meta.json, and each split's documents decoded (cut at the end-of-document token)."""
    meta = json.loads((root / "data/char/prepared/meta.json").read_text(encoding="utf-8"))
    tok = CharTokenizer(meta["chars"], eod=True)
    docs = {}
    for split in ("train", "val"):
        ids = np.fromfile(root / f"data/char/prepared/{split}.bin", dtype=meta["dtype"])
        assert ids[-1] == meta["eod"], f"{split}.bin must end with a document's end"
        cuts = np.flatnonzero(ids == meta["eod"])
        docs[split] = [tok.decode(d) for d in np.split(ids, cuts + 1)[:-1]]
        docs[split] = [d.removesuffix("<|endoftext|>") for d in docs[split]]
    return meta, docs


def test_char_tokens_are_the_characters_plus_one_end_token_per_document(project):
    """Mutation killed: no end-of-document token after a text shard's document, or one
    token dropped at each chunk's edge (the text shard is read in 7-character chunks)."""
    docs = make_documents(60)
    sharded_corpus(project / "data/raw", docs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline.data.shards, "CHUNK_CHARS", 7)
        meta, _ = prepare(Layout.load(project), data())
    assert meta["n_train"] + meta["n_val"] == sum(map(len, docs)) + len(docs)
    _, got = splits(project)  # the files: every document, each followed by the token
    assert sorted(got["train"] + got["val"]) == sorted(docs)
    sizes = [
        (project / f"data/char/prepared/{s}.bin").stat().st_size // 2 for s in ("train", "val")
    ]
    assert sizes == [meta["n_train"], meta["n_val"]]
    assert meta["eod"] == len(meta["chars"]) == meta["vocab_size"] - 1
    assert sum(meta["documents"].values()) == 60 and meta["documents"]["left out"] == 0


def test_whole_documents_land_in_each_split_and_copies_land_together(project):
    """Mutation killed: the split chosen per piece or at random instead of by the
    document's hash (a copy lands on the other side, or a document is cut)."""
    docs = make_documents(80, seed=3)
    docs += docs[:10]  # copies of ten documents, in other shards
    sharded_corpus(project / "data/raw", docs)
    prepare(Layout.load(project), data())
    _, got = splits(project)
    assert sorted(got["train"] + got["val"]) == sorted(docs)
    assert not set(got["train"]) & set(got["val"])
    assert got["val"], "the val split holds documents"


def test_val_holds_val_fraction_of_the_bytes_within_the_stated_tolerance(project):
    """Mutation killed: a hash threshold of val_fraction / 2 (or documents counted, not
    bytes, on documents of very different lengths)."""
    docs = make_documents(3000, seed=5, longest=200)
    sharded_corpus(project / "data/raw", docs)
    _, scan = prepare(Layout.load(project), data(val_fraction=0.2))
    assert scan.split.share_sd < 0.02
    assert abs(scan.split.val_share - 0.2) <= 3 * scan.split.share_sd
    _, got = splits(project)
    val_bytes = sum(len(d.encode()) for d in got["val"])
    assert val_bytes == scan.split.bytes["val"]


def test_max_val_tokens_caps_val_with_whole_documents_and_moves_none_to_train(project):
    """Mutation killed: the documents past the cap sent to train instead of left out."""
    docs = make_documents(200, seed=7)
    sharded_corpus(project / "data/raw", docs)
    full, _ = prepare(Layout.load(project), data())
    capped, _ = prepare(Layout.load(project), data(max_val_tokens=full["n_val"] // 3))
    assert 0 < capped["n_val"] <= full["n_val"] // 3
    assert capped["n_train"] == full["n_train"]
    _, got = splits(project)
    assert set(got["val"]) <= set(docs) and set(got["train"]) <= set(docs)
    assert capped["documents"]["left out"] > 0


def test_one_text_file_is_cut_exactly_as_the_in_memory_split(project, tmp_path):
    """TinyShakespeare's files stay byte-identical: one text file, streamed in small chunks
    (with Windows newlines read as Python reads them), gives the bytes of
    ``nanomoe.data.prepare``. Mutation killed: the cut off by one at a chunk edge."""
    text = CORPUS.replace("\n", "\r\n")
    (project / "data/raw/input.txt").write_bytes(text.encode("utf-8"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline.data.shards, "CHUNK_CHARS", 13)
        prepare(Layout.load(project), data())
    expected = prepare_in_memory(CORPUS, tmp_path / "memory", 0.1)
    for name in ("train.bin", "val.bin"):
        assert (project / "data/char/prepared" / name).read_bytes() == (
            tmp_path / "memory" / name
        ).read_bytes(), name
    meta = json.loads((project / "data/char/prepared/meta.json").read_text(encoding="utf-8"))
    assert {k: meta[k] for k in expected} == expected
    assert "eod" not in expected and "eod" not in meta


def test_several_text_files_are_documents_each(project):
    """Mutation killed: every .txt shard taken as the one-text-file case."""
    write_text(project / "data/raw/a.txt", "first document\n" * 30)
    write_text(project / "data/raw/b.txt", "second one\n" * 30)
    for i in range(20):
        write_text(project / f"data/raw/c{i:02}.txt", f"more {i}\n" * 5)
    meta, _ = prepare(Layout.load(project), data(val_fraction=0.3))
    assert meta["eod"] == len(meta["chars"])
    assert sum(meta["documents"].values()) == 22


def test_the_split_is_a_function_of_each_document_alone():
    """A document's split does not depend on where it stands, so prepare's two passes agree
    and shards may come in any order. Mutation killed: the router keyed on a counter."""
    docs = make_documents(300, seed=11)

    def routes(order: list[str]) -> dict[str, str | None]:
        router = Splitter(0.1)
        return {d: router.route(doc_hash(d.encode()).digest(), len(d) + 1, len(d)) for d in order}

    forward = routes(docs)
    assert forward == routes(docs[::-1])
    assert 0 < list(forward.values()).count("val") < len(forward)


def test_prepare_never_imports_torch():
    """Mutation killed: prepare importing nanomoe.data (and with it torch, ~310 MB)."""
    code = "import sys, pipeline.prepare; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_a_cap_below_the_first_validation_document_is_a_one_line_error(project):
    """Mutation killed: an empty validation split written when the cap lets no document in
    (training would fail later, far from the setting that caused it)."""
    sharded_corpus(project / "data/raw", make_documents(60, seed=4))
    with pytest.raises(StageError, match="data.max_val_tokens: smaller than the first"):
        prepare(Layout.load(project), data(max_val_tokens=2))
    assert not (project / "data/char/prepared/train.bin").exists()


def test_empty_rows_are_no_documents(project):
    """Mutation killed: an empty row counted as a document (an end token with no text)."""
    docs = make_documents(40, seed=6)
    sharded_corpus(project / "data/raw", [d if i % 5 else "" for i, d in enumerate(docs)])
    meta, _ = prepare(Layout.load(project), data())
    kept = [d for i, d in enumerate(docs) if i % 5]
    assert sum(meta["documents"].values()) == len(kept)
    assert meta["n_train"] + meta["n_val"] == sum(map(len, kept)) + len(kept)


def bpe_splits(root) -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((root / "data/bpe/prepared/meta.json").read_text(encoding="utf-8"))
    ids = {
        s: np.fromfile(root / f"data/bpe/prepared/{s}.bin", dtype="uint16")
        for s in ("train", "val")
    }
    return meta, ids


def test_bpe_documents_decode_to_themselves_each_followed_by_the_end_token(project):
    """Every document, encoded in pieces (shards read 1 MiB at a time; here 13 characters),
    decodes back whole. Mutation killed: SplitWriter encoding each piece as it comes (a word
    cut at a piece edge gets other ids) or dropping its carry at a document's end."""
    docs = make_documents(40, seed=5, longest=200)
    sharded_corpus(project / "data/raw", docs)
    layout = Layout.load(project)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline.data.shards, "CHUNK_CHARS", 13)
        meta, _ = prepare(layout, data(), "bpe")
    tok, sha = read_tokenizer(layout.tokenizer("bpe"), "x")
    assert meta["tokenizer_sha256"] == sha and meta["eod"] == tok.eod_id == 299
    _, ids = bpe_splits(project)
    got = []
    for split in ("train", "val"):
        assert ids[split][-1] == tok.eod_id
        for doc in np.split(ids[split], np.flatnonzero(ids[split] == tok.eod_id) + 1)[:-1]:
            got.append(doc[:-1].tolist())
            assert tok.encode(tok.decode(doc[:-1])) == doc[:-1].tolist()
    assert sorted(tok.decode(d) for d in got) == sorted(d for d in docs if d)


def test_one_text_file_in_bpe_is_its_train_cut_and_val_cut_each_encoded_whole(project):
    """Mutation killed: the carry not flushed at the cut (the train text's last word lost)."""
    (project / "data/raw/input.txt").write_text(CORPUS, encoding="utf-8")
    layout = Layout.load(project)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline.data.shards, "CHUNK_CHARS", 29)
        meta, _ = prepare(layout, data(), "bpe")
    tok, _ = read_tokenizer(layout.tokenizer("bpe"), "x")
    n_val = round(len(CORPUS) * 0.1)
    _, ids = bpe_splits(project)
    assert ids["train"].tolist() == tok.encode(CORPUS[: len(CORPUS) - n_val])
    assert ids["val"].tolist() == tok.encode(CORPUS[len(CORPUS) - n_val :])
    assert meta["text"]["val"] == {"chars": n_val, "bytes": len(CORPUS[-n_val:].encode())}
    assert "eod" not in meta


def test_the_bpe_learns_from_the_train_split_only_and_the_same_split_gives_the_same_file(
    project,
):
    """Changing a validation document leaves tokenizer.json byte for byte as it was;
    changing a train document does not. Mutation killed: train_sample taking val text too."""
    docs = make_documents(60, seed=6, longest=150)
    split = {d: is_val(doc_hash(d.encode()).digest(), 0.1) for d in docs}
    val_doc = next(d for d in docs if split[d])
    train_doc = next(d for d in docs if not split[d])
    layout = Layout.load(project)

    def learned(corpus: list[str]) -> bytes:
        for f in (project / "data/raw").iterdir():
            f.unlink()
        sharded_corpus(project / "data/raw", corpus)
        _, path = write_tokenizer(layout, data(), TokenizerParams(vocab_size=320), "bpe")
        return path.read_bytes()

    def changed(doc: str, to_val: bool) -> str:
        """``doc`` with a val-only word added, still routed where it was."""
        for k in range(1000):
            new = doc + f"zzqq{k} " * 40  # a frequent pair: a merge if it were learned from
            if is_val(doc_hash(new.encode()).digest(), 0.1) == to_val:
                return new
        raise AssertionError("no suffix keeps the document in its split")

    first = learned(docs)
    assert learned(docs) == first
    assert learned([changed(d, True) if d == val_doc else d for d in docs]) == first
    assert learned([changed(d, False) if d == train_doc else d for d in docs]) != first


def test_a_shard_named_in_capitals_is_gunzipped_as_its_format_says(project):
    """``DOCS.JSONL.GZ`` is a gzipped JSONL shard, as ``shard_format`` (case-blind) says.
    Mutation killed: ``is_gzipped`` matching ``.gz`` case-sensitively (the gzip bytes then
    read as JSONL: one error line about line 1, not a corpus)."""
    docs = make_documents(30, seed=8)
    write_jsonl(project / "data/raw/DOCS.JSONL.GZ", docs)
    meta, _ = prepare(Layout.load(project), data())
    assert sum(meta["documents"].values()) == len(docs)
