"""Documents out of a shard, streamed: a text file is one document, read in chunks; a JSONL
line or a Parquet row is one, its ``data.text_field``. Parquet is read a batch of one row
group at a time, so memory holds a chunk, never a shard.

Every way a shard can be unusable is a StageError naming the shard (and the line or row) and
the fix, raised as the reader meets it: the prepare stage reads every shard once before it
writes anything.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.sources import is_gzipped, shard_format
from pipeline.stage import StageError

CHUNK_CHARS = 1 << 20  # characters per read of a text document (4 MiB as UTF-32)
PARQUET_BATCH = 128  # rows per batch within a row group: Python strings of 128 documents
Progress = Callable[[int], None]  # told how many bytes of the shard file are read so far

_DROP = "or drop the shard from data.url"
_JSON_KINDS = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "an array",
    dict: "an object",
}


@contextmanager
def _opened(path: Path, shown: str) -> Iterator[tuple[io.BufferedReader, io.BufferedIOBase]]:
    """(the file, its bytes: gunzipped for a .gz shard); a broken gzip stream met in the
    block is one line naming the shard."""
    with open(path, "rb") as raw:
        try:
            yield raw, gzip.GzipFile(fileobj=raw, mode="rb") if is_gzipped(path.name) else raw
        except (gzip.BadGzipFile, EOFError, zlib.error):
            raise _bad(shown, "", "not a readable gzip file", f"fetch it again, {_DROP}") from None


def _bad(shown: str, where: str, problem: str, fix: str) -> StageError:
    return StageError(f"{shown}: {where}{problem}; {fix}")


def _text_chunks(path: Path, shown: str, progress: Progress) -> Iterator[str]:
    """A text file's characters, ``CHUNK_CHARS`` at a time, newlines read as Python's
    universal newlines (``\\r\\n`` -> ``\\n``), as ``Path.read_text`` reads them."""
    with _opened(path, shown) as (raw, stream):
        text = io.TextIOWrapper(stream, encoding="utf-8")
        try:
            while chunk := text.read(CHUNK_CHARS):
                progress(raw.tell())
                yield chunk
        except UnicodeDecodeError as err:
            bad = f"not UTF-8 text (byte {err.object[err.start]:#04x})"
            raise _bad(shown, "", bad, f"convert it to UTF-8, {_DROP}") from None


def _row_text(shown: str, where: str, row: object, field: str) -> str:
    if not isinstance(row, dict):
        bad, fix = f"a {type(row).__name__}, not a JSON object", f"make it one, {_DROP}"
        raise _bad(shown, where, bad, fix)
    if field not in row:
        keys = ", ".join(sorted(row)[:8]) or "none"
        fix = "set data.text_field to the key holding the text"
        raise _bad(shown, where, f"no key {field!r} (keys: {keys})", fix)
    text = row[field]
    if not isinstance(text, str):
        got = _JSON_KINDS.get(type(text), "null")
        raise _bad(shown, where, f"{field!r} is {got}, not a string", f"fix the row, {_DROP}")
    return text


def _jsonl_rows(path: Path, shown: str, field: str, progress: Progress) -> Iterator[str]:
    with _opened(path, shown) as (raw, lines):
        for n, line in enumerate(lines, 1):
            where = f"line {n}: "
            try:
                row = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as err:
                bad = f"not UTF-8 text (byte {line[err.start]:#04x})"
                raise _bad(shown, where, bad, f"convert it to UTF-8, {_DROP}") from None
            except json.JSONDecodeError as err:
                if not line.strip():
                    continue  # a blank line, as at the end of many files
                bad = f"not JSON ({err.msg}, column {err.colno})"
                raise _bad(shown, where, bad, f"fix that line, {_DROP}") from None
            if n % 1024 == 0:
                progress(raw.tell())
            yield _row_text(shown, where, row, field)


def _reason(err: Exception) -> str:
    """The first line of what Arrow said, or the error's type."""
    return str(err).splitlines()[0][:120] if str(err) else type(err).__name__


def _parquet_rows(path: Path, shown: str, field: str, progress: Progress) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # malloc and free, not Arrow's caching allocator: what a row group took goes back to
    # the system before the next one, so the peak is one row group's, not a high-water mark
    pa.set_memory_pool(pa.system_memory_pool())
    corrupt = f"fetch it again (delete it, then dvc repro download), {_DROP}"
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as err:
        raise _bad(shown, "", f"not a readable Parquet file ({_reason(err)})", corrupt) from None
    if field not in schema.names:
        cols = ", ".join(schema.names[:8]) or "none"
        fix = "set data.text_field to the column holding the text"
        raise _bad(shown, "", f"no column {field!r} (columns: {cols})", fix)
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        fix = "set data.text_field to a string column"
        raise _bad(shown, "", f"column {field!r} holds {kind}, not strings", fix)
    size, groups, seen = path.stat().st_size, pf.metadata.num_row_groups, 0
    try:
        for group in range(groups):  # one at a time: over the whole file, Arrow reads ahead
            batches = pf.iter_batches(PARQUET_BATCH, [group], [field], use_threads=False)
            for batch in batches:
                column = batch.column(0)
                if column.null_count:
                    row = seen + column.is_null().to_pylist().index(True) + 1
                    bad = f"{field!r} is null, not a string"
                    raise _bad(shown, f"row {row}: ", bad, f"fill it, {_DROP}")
                seen += len(column)
                yield from column.to_pylist()
            progress(size * (group + 1) // groups)
    except (pa.ArrowException, OSError) as err:
        raise _bad(shown, "", f"not a readable Parquet file ({_reason(err)})", corrupt) from None


def documents(
    path: Path, shown: str, text_field: str, progress: Progress = lambda n: None
) -> Iterator[Iterable[str]]:
    """Each document of the shard at ``path`` as an iterable of its text's pieces (``shown``
    is its name in errors). A shard with no characters at all is an error."""
    fmt = shard_format(path.name)
    empty = True
    if fmt == "txt":
        chunks = _text_chunks(path, shown, progress)
        first = next(chunks, "")
        if first:
            empty = False
            yield _chain(first, chunks)
    else:
        rows = _jsonl_rows if fmt == "jsonl" else _parquet_rows
        for text in rows(path, shown, text_field, progress):
            empty = empty and not text
            yield (text,)
    if empty:
        fix = f"fill it, {_DROP}" if fmt == "txt" else f"check data.text_field, {_DROP}"
        raise _bad(shown, "", "holds no text (no document with a character)", fix)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest
