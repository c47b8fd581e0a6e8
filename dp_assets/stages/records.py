"""Stage JSON Lines and Parquet deliveries as the CSV ones are staged: one string column per field
(names made snake_case), ``_line`` (a JSON Lines file's line, a Parquet file's row number),
``_source_file``, and for a record that cannot be read, ``_reject_reason`` and ``_raw_text``. Values
are typed by the load, which quarantines what does not cast; so rows in = rows staged here.

Nested values (JSON objects and arrays, Parquet structs, lists and maps) are kept as JSON text in
their column: declare the column ``string`` and query it with JSON functions.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dp_assets.stages.staging import _SURROGATE, BATCH_ROWS, StagedFile, _flush, _schema, normalize_header
from spark_jobs.contract import LINE, RAW, REASON, SOURCE

Opener = Callable[[], AbstractContextManager[IO[bytes]]]
_SPOOL = 64 << 20  # a Parquet file is read from memory up to this size, from a temporary file beyond


def as_text(value: Any) -> str | None:
    """A JSON value as the text the load casts: strings as they are, numbers and booleans as JSON
    writes them, objects and arrays as compact JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _json_records(text: IO[str]) -> Iterator[tuple[int, dict | None, str | None, str]]:
    """(line, object or None, why it is rejected, raw line) for every line that is not blank. A
    corrupt compressed stream ends the file with one rejected record, as in a CSV file."""
    number = 0
    while True:
        try:
            line = next(text)
        except StopIteration:
            return
        except (OSError, EOFError, zlib.error) as e:
            yield (
                number + 1,
                None,
                f"corrupt compressed stream after line {number}: {e}; the rest is unreadable",
                "",
            )
            return
        number += 1
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue  # a blank line is not a record
        if _SURROGATE.search(raw):
            yield number, None, "bytes that are not valid in the file's encoding", _escaped(raw)
            continue
        try:
            value = json.loads(raw)
        except ValueError as e:
            yield number, None, f"not valid JSON: {e}", raw
            continue
        if not isinstance(value, dict):
            yield number, None, f"not a JSON object but {type(value).__name__}", raw
            continue
        yield number, value, None, raw


def _escaped(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def stage_jsonl(
    open_text: Callable[[], AbstractContextManager[IO[str]]], name: str, sink: IO[bytes]
) -> StagedFile:
    """Two passes over the file: the fields, in the order they first appear, then the rows."""
    fields: dict[str, None] = {}
    with open_text() as text:
        for _, value, _, _ in _json_records(text):
            fields.update(dict.fromkeys(value or {}))
    staged = StagedFile(parser="jsonl")
    if not fields:
        staged.notes.append("no JSON object with a field")
    columns = normalize_header(list(fields))
    column_of = dict(zip(fields, columns, strict=True))
    buffers: dict[str, list[Any]] = {c: [] for c in [*columns, LINE, SOURCE, REASON, RAW]}
    with open_text() as text, pq.ParquetWriter(sink, _schema(columns)) as writer:
        for number, value, reason, raw in _json_records(text):
            row = {column_of[k]: as_text(v) for k, v in (value or {}).items()}
            for c in columns:
                buffers[c].append(row.get(c))
            buffers[LINE].append(number)
            buffers[SOURCE].append(name)
            buffers[REASON].append(reason)
            buffers[RAW].append(raw if reason else None)
            staged.rows += 1
            staged.rejected += reason is not None
            if len(buffers[LINE]) >= BATCH_ROWS:
                _flush(writer, buffers, columns)
        _flush(writer, buffers, columns)
    staged.columns = columns if fields else []
    return staged


def _as_strings(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """A Parquet column as text: primitive types by Arrow's cast, nested ones as JSON."""
    kind = column.type
    if pa.types.is_nested(kind):
        return pa.array([as_text(v) for v in column.to_pylist()], pa.string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.array(
            [None if v is None else v.decode("utf-8", "backslashreplace") for v in column.to_pylist()]
        )
    return pc.cast(column, pa.string())


def stage_parquet(open_source: Opener, name: str, sink: IO[bytes]) -> StagedFile:
    """Row by row group; a file that is not valid Parquet is one rejected record naming the file."""
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as local:
        with open_source() as raw:
            while chunk := raw.read(8 << 20):
                local.write(chunk)
        local.seek(0)
        try:
            parquet = pq.ParquetFile(local)
        except (pa.ArrowInvalid, OSError) as e:
            return _unreadable(name, sink, f"not a valid Parquet file: {str(e).splitlines()[0][:200]}")
        fields = parquet.schema_arrow.names
        columns = normalize_header(fields)
        staged = StagedFile(parser="parquet", columns=columns)
        schema = _schema(columns)
        with pq.ParquetWriter(sink, schema) as writer:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                n = batch.num_rows
                lines = pa.array(range(staged.rows + 1, staged.rows + n + 1), pa.int64())
                nulls = pa.nulls(n, pa.string())
                values = [_as_strings(batch.column(f)) for f in fields]
                writer.write_batch(
                    pa.record_batch(
                        [*values, lines, pa.array([name] * n, pa.string()), nulls, nulls], schema=schema
                    )
                )
                staged.rows += n
        return staged


def _unreadable(name: str, sink: IO[bytes], reason: str) -> StagedFile:
    """One rejected record for a whole file: counted, quarantined with the reason, never loaded."""
    table = pa.table(
        {LINE: pa.array([None], pa.int64()), SOURCE: [name], REASON: [reason], RAW: [""]}, schema=_schema([])
    )
    pq.write_table(table, sink)
    return StagedFile(rows=1, rejected=1, parser="parquet", notes=[reason], columns=[])
