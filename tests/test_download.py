"""The download stage: each shard streamed into data/raw/, checked before it takes its name,
fetched once, and the override variable naming a file, a list or a folder."""

from __future__ import annotations

import gzip
import hashlib
import io
from contextlib import contextmanager

import pytest
from _project import CORPUS, env_for, make_project, run_module
from _shards import make_documents, write_jsonl, write_parquet

import pipeline.data.download as dl
from pipeline.data.download import download
from pipeline.sources import DataParams, Shard
from pipeline.stage import ParamsError, StageError


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shard(path, checked: bool = True) -> Shard:
    return Shard(path.as_uri(), sha(path) if checked else None, path.name)


def test_download_writes_every_shard_under_its_name_when_its_checksum_matches(tmp_path):
    """Mutation killed: shards written under one name (the last overwrites the first)."""
    docs = make_documents(20)
    a = write_parquet(tmp_path / "a.parquet", docs[:10])
    b = write_jsonl(tmp_path / "b.jsonl", docs[10:])
    done = download([shard(a), shard(b)], tmp_path / "raw")
    assert (tmp_path / "raw/a.parquet").read_bytes() == a.read_bytes()
    assert (tmp_path / "raw/b.jsonl").read_bytes() == b.read_bytes()
    assert [(d, fetched) for _, d, fetched in done] == [(sha(a), True), (sha(b), True)]


def test_a_plain_path_works_as_a_url(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text(CORPUS, encoding="utf-8")
    download([Shard(str(src), None, "src.txt")], tmp_path / "raw")
    assert (tmp_path / "raw/src.txt").read_text(encoding="utf-8") == CORPUS


def test_checksum_mismatch_names_both_hashes_and_leaves_no_file(tmp_path):
    """Mutation killed: the shard written before its checksum is compared."""
    src = tmp_path / "src.txt"
    src.write_text("tampered", encoding="utf-8")
    with pytest.raises(StageError) as err:
        download([Shard(src.as_uri(), "0" * 64, "src.txt")], tmp_path / "raw")
    assert "0" * 64 in str(err.value) and sha(src) in str(err.value)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_unreachable_url_fails_naming_the_override_variable(tmp_path):
    for url in ((tmp_path / "missing.txt").as_uri(), "http://127.0.0.1:9/input.txt"):
        with pytest.raises(StageError, match="NANOMOE_DATA_URL"):
            download([Shard(url, None, "input.txt")], tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_shard_already_there_with_its_checksum_is_not_fetched_again(tmp_path):
    """Mutation killed: every shard fetched on every run (the source is gone: it fails)."""
    src = write_jsonl(tmp_path / "a.jsonl", make_documents(5))
    good = shard(src)
    download([good], tmp_path / "raw")
    src.unlink()
    done = download([good], tmp_path / "raw")
    assert done == [(good, good.sha256, False)]


def test_a_shard_there_with_other_bytes_is_fetched_again(tmp_path):
    """Mutation killed: a shard kept because its name is there, whatever it holds."""
    src = write_jsonl(tmp_path / "a.jsonl", make_documents(5))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/a.jsonl").write_bytes(b"half a shard")
    download([shard(src)], tmp_path / "raw")
    assert (tmp_path / "raw/a.jsonl").read_bytes() == src.read_bytes()


def test_a_connection_that_breaks_off_leaves_no_partial_shard(tmp_path, monkeypatch):
    """Mutation killed: streaming straight into the shard's name (half a shard stays)."""

    class BreaksOff(io.BytesIO):
        def read(self, n=-1):
            if self.tell():
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(10)

    @contextmanager
    def flaky(url, timeout=60.0):
        yield BreaksOff(b"x" * 100), 100

    monkeypatch.setattr(dl, "open_url", flaky)
    with pytest.raises(StageError, match="cannot fetch"):
        download([Shard("https://example.org/a.txt", None, "a.txt")], tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []  # no shard, no temporary file


def test_gzipped_text_is_checked_as_utf8_after_gunzip(tmp_path):
    """Mutation killed: the UTF-8 check run on the compressed bytes (no gzip stream is
    UTF-8, so the good shard fails) or skipped for .gz (the Latin-1 one passes)."""
    good, bad = tmp_path / "good.txt.gz", tmp_path / "bad.txt.gz"
    good.write_bytes(gzip.compress(CORPUS.encode("utf-8")))
    bad.write_bytes(gzip.compress("café\n".encode("latin-1")))
    download([shard(good)], tmp_path / "raw")
    with pytest.raises(StageError, match="not UTF-8 text"):
        download([shard(bad)], tmp_path / "raw")
    assert not (tmp_path / "raw/bad.txt.gz").exists()


def test_files_no_longer_in_data_url_go_only_once_every_shard_is_in(tmp_path):
    """Mutation killed: stale shards removed before the new ones are fetched (a failed run
    would have deleted the last good corpus)."""
    old = write_jsonl(tmp_path / "old.jsonl", make_documents(3))
    new = write_jsonl(tmp_path / "new.jsonl", make_documents(4, seed=1))
    raw = tmp_path / "raw"
    download([shard(old)], raw)
    with pytest.raises(StageError):
        download([shard(new), Shard((tmp_path / "gone.jsonl").as_uri(), None, "gone.jsonl")], raw)
    assert (raw / "old.jsonl").exists()
    download([shard(new)], raw)
    assert sorted(p.name for p in raw.iterdir()) == ["new.jsonl"]


def _data(url, sha256=None) -> DataParams:
    return DataParams(url=url, sha256=sha256)


def test_the_override_names_a_file_a_list_or_a_folder_of_shards(tmp_path, monkeypatch):
    """Mutation killed: a folder's files taken in directory order, or the list not split."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("b.parquet", "a.jsonl", "notes.md", ".hidden.txt"):
        (folder / name).write_text("x")
    data = _data(["https://example.org/one.jsonl", "https://example.org/two.parquet"])
    monkeypatch.setenv("NANOMOE_DATA_URL", str(folder))
    assert [s.name for s in data.shards()] == ["a.jsonl", "b.parquet"]
    monkeypatch.setenv("NANOMOE_DATA_URL", f"{folder / 'b.parquet'}  {folder / 'a.jsonl'}")
    assert [s.name for s in data.shards()] == ["b.parquet", "a.jsonl"]
    monkeypatch.setenv("NANOMOE_DATA_URL", str(folder / "a.jsonl"))
    assert [s.url for s in data.shards()] == [str(folder / "a.jsonl")]


def test_the_override_must_name_as_many_shards_as_the_checksums_check(tmp_path, monkeypatch):
    """Mutation killed: checksums zipped onto a shorter list (a shard goes unchecked)."""
    data = _data(["https://example.org/a.jsonl", "https://example.org/b.jsonl"], ["a" * 64] * 2)
    monkeypatch.setenv("NANOMOE_DATA_URL", str(tmp_path / "a.jsonl"))
    with pytest.raises(ParamsError, match="NANOMOE_DATA_URL: names 1 shards.*data.sha256"):
        data.shards()
    assert len(_data(data.url).shards()) == 1  # no checksums: any number of shards


def test_download_stage_uses_the_override_and_exits_2_on_a_bad_one(tmp_path):
    root = make_project(tmp_path)
    env_ok = {"NANOMOE_DATA_URL": str(root / "corpus.txt")}
    ok = run_module(root, "pipeline.download", env={**env_for(root), **env_ok})
    assert ok.returncode == 0, ok.stderr
    assert (root / "data/raw/corpus.txt").read_text(encoding="utf-8") == CORPUS
    bad = run_module(root, "pipeline.download", env={**env_for(root), "NANOMOE_DATA_URL": "/nope"})
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "NANOMOE_DATA_URL" in lines[0]


def test_a_runs_data_tag_names_every_shards_checksum():
    """Mutation killed: a list of checksums tagged as is (MLflow refuses a list) or only
    the first shard's (two corpora sharing a first shard would look the same)."""
    one = _data("https://example.org/a.txt", "a" * 64)
    many = _data(["https://example.org/a.txt", "https://example.org/b.txt"], ["a" * 64, "b" * 64])
    other = _data(many.url, ["a" * 64, "c" * 64])
    assert one.fingerprint == "a" * 64
    assert many.fingerprint.startswith("2 shards: ") and many.fingerprint != other.fingerprint
    assert _data(many.url, ["a" * 64, None]).fingerprint == "unchecked"
