"""Stage JSON Lines and Parquet deliveries as the CSV ones are staged: one string column per field
(names made snake_case), ``_line`` (a JSON Lines file's line, a Parquet file's row number),
``_source_file``, and for a record that cannot be read, ``_reject_reason`` and ``_raw_text``. Values
are typed by the load, which quarantines what does not cast; so rows in = rows staged here. Nothing
delivered makes the dump fail: what cannot be read is a rejected record that says why.

Nested values (JSON objects and arrays, Parquet structs and lists) are kept as JSON text in their
column (Parquet maps as ``[[key, value], …]``): declare the column ``string`` and query it with JSON
functions.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spark_jobs.contract import LINE, RAW, REASON, SOURCE
from spark_jobs.dumping.staged import (
    BATCH_ROWS,
    UNDECODED,
    StagedFile,
    batches,
    escaped,
    flush,
    normalize_header,
    staged_schema,
)

Opener = Callable[[], AbstractContextManager[IO[bytes]]]
TextOpener = Callable[[], AbstractContextManager[IO[str]]]
MAX_FIELDS = 1000  # distinct fields of one JSON Lines file; more are keys that are data (ids, emails)
MAX_LINE = 16 << 20  # characters of one JSON Lines record; a longer line is rejected, not held whole
RAW_KEPT = 64 << 10  # characters of an over-long line kept as its raw text (its bytes stay in raw)
_SPOOL = 64 << 20  # a Parquet file is read from memory up to this size, from a temporary file beyond
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # "\ud83d" alone is valid JSON, but no text
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # only a line with one can decode to a lone one
_UNSTREAMABLE = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def as_text(value: Any) -> str | None:
    """A JSON value as the text the load casts: strings as they are, numbers and booleans as JSON
    writes them, objects and arrays as compact JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)  # what json.dumps writes, without its encoder's cost per value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _json_records(text: IO[str]) -> Iterator[tuple[int, dict | None, str | None, str]]:
    """(line, object or None, why it is rejected, raw line) for every line that is not blank. A
    corrupt compressed stream, or bytes the encoding cannot hold, end the file with one rejected
    record, as in a CSV file. A line longer than ``MAX_LINE`` is read past in pieces and rejected, so
    memory stays bounded whatever the file holds."""
    number = 0
    while True:
        try:
            line = text.readline(MAX_LINE + 1)
            too_long = len(line) > MAX_LINE and not line.endswith("\n")
            piece = line
            while piece and not piece.endswith("\n") and too_long:
                piece = text.readline(1 << 20)
        except _UNSTREAMABLE as e:
            yield number + 1, None, f"unreadable after line {number}: {e}; the rest is unreadable", ""
            return
        if not line:
            return
        number += 1
        if too_long:
            reason = f"longer than {MAX_LINE:,} characters: its first {RAW_KEPT:,} are kept here"
            yield number, None, reason, escaped(line[:RAW_KEPT])
            continue
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue  # a blank line is not a record
        if UNDECODED.search(raw):
            yield number, None, "bytes that are not valid in the file's encoding", escaped(raw)
            continue
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as e:
            yield number, None, f"not valid JSON: {str(e)[:200]}", raw
            continue
        if not isinstance(value, dict):
            yield number, None, f"not a JSON object but {type(value).__name__}", raw
            continue
        may_hold_one = _SURROGATE_ESCAPE.search(raw) or _LONE_SURROGATE.search(raw)  # e.g. UTF-7's "+2D0-"
        if may_hold_one and _LONE_SURROGATE.search(json.dumps(value, ensure_ascii=False)):
            why = "an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)"
            yield number, None, why, raw.encode("utf-8", "backslashreplace").decode()
            continue
        yield number, value, None, raw


def _why_all_rejected(columns: list[str], design: list[str], what: str) -> str | None:
    """The CSV's rule for a file whose names match nothing: every record is rejected, not loaded
    as empty rows."""
    if columns and not set(columns) & set(design):
        return f"{what} share no name with the design's columns (is this the table's file?)"
    return None


def stage_jsonl(open_text: TextOpener, name: str, design: list[str], sink: IO[bytes]) -> StagedFile:
    """Two passes over the file: the fields, in the order they first appear, then the rows."""
    fields: dict[str, None] = {}
    with open_text() as text:
        for _, value, _, _ in _json_records(text):
            fields.update(dict.fromkeys(value or {}))
    staged = StagedFile(parser="jsonl")
    too_many = len(fields) > MAX_FIELDS
    if too_many:
        fields = {}
        staged.notes.append(f"more than {MAX_FIELDS} distinct fields: keys that are data?")
    columns = normalize_header(list(fields))
    column_of = dict(zip(fields, columns, strict=True))
    everything = (
        f"more than {MAX_FIELDS} distinct fields: keys that are data (ids, names) rather than "
        "a layout; deliver such maps as one nested object"
        if too_many
        else _why_all_rejected(columns, design, "the file's fields")
    )
    staged.header_matches = everything is None
    buffers: dict[str, list[Any]] = {c: [] for c in [*columns, LINE, SOURCE, REASON, RAW]}
    with open_text() as text, pq.ParquetWriter(sink, staged_schema(columns)) as writer:
        for number, value, reason, raw in _json_records(text):
            reason = reason or everything
            row = {column_of[k]: as_text(v) for k, v in (value or {}).items() if reason is None}
            for c in columns:
                buffers[c].append(row.get(c))
            buffers[LINE].append(number)
            buffers[SOURCE].append(name)
            buffers[REASON].append(reason)
            buffers[RAW].append(raw if reason else None)
            staged.rows += 1
            staged.rejected += reason is not None
            if len(buffers[LINE]) >= BATCH_ROWS:
                flush(writer, buffers, columns)
        flush(writer, buffers, columns)
    staged.columns = columns
    return staged


def _as_strings(column: pa.Array) -> pa.Array:
    """A Parquet column as text: primitive types by Arrow's cast, nested ones as JSON, bytes with
    what is not UTF-8 escaped."""
    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return pa.array(
            [None if v is None else v.decode("utf-8", "backslashreplace") for v in column.to_pylist()],
            pa.string(),
        )
    if not pa.types.is_nested(kind):
        try:
            return pc.cast(column, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # e.g. a type Arrow cannot cast to text: as Python writes it
    return pa.array([as_text(v) for v in column.to_pylist()], pa.string())


def stage_parquet(
    open_content: Opener, name: str, design: list[str], sink: IO[bytes], sample_rows: int | None = None
) -> StagedFile:
    """Batch by batch. A file that is not valid Parquet is one rejected record naming the file; one
    that breaks midway keeps the rows read before, and the rest is one rejected record."""
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as local:
        try:
            with open_content() as content:
                while chunk := content.read(8 << 20):
                    local.write(chunk)
            local.seek(0)
            parquet = pq.ParquetFile(local)
        except (pa.ArrowInvalid, *_UNSTREAMABLE) as e:
            return _unreadable(name, sink, f"not a valid Parquet file: {str(e).splitlines()[0][:200]}")
        columns = normalize_header(parquet.schema_arrow.names)
        everything = _why_all_rejected(columns, design, "the file's columns")
        staged = StagedFile(parser="parquet", columns=columns, header_matches=everything is None)
        schema = staged_schema(columns)
        with pq.ParquetWriter(sink, schema) as writer:
            try:
                for batch in batches(parquet, min(BATCH_ROWS, sample_rows or BATCH_ROWS)):
                    if sample_rows is not None and staged.rows >= sample_rows:
                        break
                    n = batch.num_rows
                    lines = pa.array(range(staged.rows + 1, staged.rows + n + 1), pa.int64())
                    reasons = pa.array([everything] * n, pa.string())
                    values = [_as_strings(batch.column(i)) for i in range(batch.num_columns)]
                    writer.write_batch(
                        pa.record_batch(
                            [
                                *values,
                                lines,
                                pa.array([name] * n, pa.string()),
                                reasons,
                                pa.nulls(n, pa.string()),
                            ],
                            schema=schema,
                        )
                    )
                    staged.rows += n
                    staged.rejected += n if everything else 0
            except (pa.ArrowException, *_UNSTREAMABLE) as e:
                cause = str(e).splitlines()[0][:200]
                why = f"unreadable from row {staged.rows + 1}: {cause}; the rest is unreadable"
                writer.write_table(_rejected_record(columns, name, why))
                staged.rows += 1
                staged.rejected += 1
                staged.notes.append(why)
        return staged


def _rejected_record(columns: list[str], name: str, reason: str) -> pa.Table:
    row = {c: [None] for c in columns} | {LINE: [None], SOURCE: [name], REASON: [reason], RAW: [""]}
    return pa.table(row, schema=staged_schema(columns))


def _unreadable(name: str, sink: IO[bytes], reason: str) -> StagedFile:
    """One rejected record for a whole file: counted, quarantined with the reason, never loaded;
    its bytes stay in the raw zone."""
    pq.write_table(_rejected_record([], name, reason), sink)
    return StagedFile(rows=1, rejected=1, parser="parquet", notes=[reason], columns=[])
