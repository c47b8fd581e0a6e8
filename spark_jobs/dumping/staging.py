"""Parse a delivered CSV file once into a staged Parquet file that Spark can type without re-parsing.

Every record becomes a row of string columns (header names made snake_case) plus ``_line`` (the
physical line it starts on), ``_source_file``, and — for records that cannot be parsed —
``_reject_reason`` and ``_raw_text``. Nothing is dropped: a malformed record is a rejected row, so
rows in = rows staged, and the load can account for every one.

Clean files take pyarrow's C++ reader (about 30x Python's csv module here). A file with any anomaly
— wrong field count, bad quoting, undecodable bytes, blank lines, a corrupt gzip stream, a header
that matches nothing in the design — is re-read by the exact path (Python's csv module), which
knows line numbers and raw text for each bad record.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import functools
import io
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from spark_jobs.contract import LINE, RAW, REASON, SOURCE, CsvOptions  # the staged columns the load reads
from spark_jobs.dumping.parts import Part
from spark_jobs.dumping.records import stage_jsonl, stage_parquet
from spark_jobs.dumping.sniff import RAW_HEAD_BYTES, decompressed, sniff
from spark_jobs.dumping.staged import (
    BATCH_ROWS,
    META_COLUMNS,
    UNDECODED,
    StagedFile,
    escaped,
    flush,
    is_blank,
    normalize_header,
    staged_schema,
)

csv.field_size_limit(2**31 - 1)

# pyarrow's read block. The reader's memory grows with it, not its speed: staging TPC-H SF1 lineitem
# (730 MiB) took 18.6 / 17.9 / 18.4 s and peaked at 263 / 412 / 954 MB with 1 / 4 / 16 MiB blocks.
# A record longer than a block takes the exact path.
_BLOCK = 1 << 20


class NeedsExactPath(Exception):
    """The fast reader met something only the exact path can describe row by row."""


class NeedsWholeFile(Exception):
    """A part of a file cannot be parsed apart from the rest: stage the file whole."""


def _settle_unnamed(staged: StagedFile, header: list[str], filled: set[str]) -> None:
    """A column without a header name (a trailing delimiter on every line) is dropped when it is
    empty in every row; one that holds values stays, as ``unnamed_<position>``, and is named."""
    unnamed = {c for n, c in zip(header, staged.columns, strict=True) if is_blank(n)}
    for position, c in enumerate(staged.columns, 1):
        if c in unnamed and c in filled:
            staged.warnings.append(f"column {position} has no header name but holds values: staged as {c}")
        elif c in unnamed:
            staged.notes.append(f"column {position} has no header name and no value in any row: dropped")
    staged.columns = [c for c in staged.columns if c not in unnamed or c in filled]


@contextmanager
def decompressed_source(open_source: Any, compression: str | None) -> Iterator[IO[bytes]]:
    with open_source() as raw:
        yield decompressed(raw, compression)


def stage_file(
    open_source: Any,
    name: str,
    fmt: CsvOptions,
    design_columns: list[str],
    sink: IO[bytes],
    file_format: str = "csv",
    sample_rows: int | None = None,
    part: Part | None = None,
) -> StagedFile:
    """Stage one delivered file (``open_source()`` opens its bytes) into Parquet written to ``sink``.
    Its compression and text encoding come from its bytes (``sniff``); a CSV or JSON Lines file that
    is not text stages nothing. JSON Lines and Parquet are staged by ``records``; of a Parquet file,
    only the first ``sample_rows`` rows, when given (validation's sample).

    With ``part``, only that part of a CSV file is staged (``open_source(start, end)`` opens its
    bytes), by the fast path; anything else raises ``NeedsWholeFile``."""
    if part is not None:  # its head only (a ranged read): the file is large
        sniffed = sniff(lambda: open_source(0, RAW_HEAD_BYTES), name, fmt.encoding, file_format)
        if file_format != "csv" or sniffed.compression or sniffed.encoding or sniffed.not_text:
            raise NeedsWholeFile(f"{name} is not uncompressed single-byte text")
        if '"' in fmt.null_value:
            raise NeedsWholeFile(f"the null value {fmt.null_value!r} holds a quote")
        try:
            with open_source(0, _BLOCK) as head, open_source(part.start, part.end) as span:
                staged = _stage_fast(span, name, fmt, design_columns, sink, part, head.read())
        except NeedsExactPath as why:
            raise NeedsWholeFile(str(why)) from why
        staged.warnings = sniffed.warnings + staged.warnings
        return staged
    sniffed = sniff(open_source, name, fmt.encoding, file_format)
    if file_format == "parquet":
        staged = stage_parquet(
            lambda: decompressed_source(open_source, sniffed.compression),
            name,
            design_columns,
            sink,
            sample_rows,
        )
        staged.warnings = sniffed.warnings + staged.warnings
        return staged
    if sniffed.not_text:
        return StagedFile(notes=[f"looks like {sniffed.not_text}"], warnings=sniffed.warnings)
    if sniffed.encoding:
        fmt = dataclasses.replace(fmt, encoding=sniffed.encoding)
    if file_format == "jsonl":
        encoding = "utf-8-sig" if _is_utf8(fmt.encoding) else fmt.encoding

        @contextmanager
        def open_text() -> Iterator[IO[str]]:
            with decompressed_source(open_source, sniffed.compression) as content:
                yield io.TextIOWrapper(content, encoding=encoding, errors="surrogateescape")

        staged = stage_jsonl(open_text, name, design_columns, sink)
        staged.warnings = sniffed.warnings + staged.warnings
        return staged
    try:
        if sniffed.encoding:  # the fast path watches bytes for quotes and blank lines: one byte each
            raise NeedsExactPath(f"{sniffed.encoding.upper()} text")
        with open_source() as raw:
            staged = _stage_fast(decompressed(raw, sniffed.compression), name, fmt, design_columns, sink)
    except NeedsExactPath as why:
        sink.seek(0)
        sink.truncate()
        with open_source() as raw:
            staged = _stage_exact(decompressed(raw, sniffed.compression), name, fmt, design_columns, sink)
        staged.notes.insert(0, str(why))
    staged.warnings = sniffed.warnings + staged.warnings
    return staged


def _stage_fast(
    stream: IO[bytes],
    name: str,
    fmt: CsvOptions,
    design: list[str],
    sink: IO[bytes],
    part: Part | None = None,
    file_head: bytes = b"",
) -> StagedFile:
    """``stream`` staged by pyarrow. A ``part`` after the first holds no header: the header is read
    from ``file_head``, the file's first bytes, and its lines are numbered from the part's first.
    A part's values and header must hold no quote character (see ``parts``)."""
    bad: list[str] = []
    later_part = part is not None and part.index > 0

    def on_invalid(row: Any) -> str:
        bad.append(f"row {row.number}: expected {row.expected_columns} fields, got {row.actual_columns}")
        return "skip"

    try:
        head = stream.read(_BLOCK)
        if not head.strip():
            if part is not None:  # blank lines: the whole file's parse says where
                raise NeedsExactPath("a part of blank lines")
            return StagedFile(notes=["empty file" if not head else "blank file"])
        if later_part and head.startswith(codecs.BOM_UTF8):  # pyarrow drops one that starts a stream
            raise NeedsExactPath("a part starts with a byte-order mark")
        if _is_utf8(fmt.encoding) and head.startswith(codecs.BOM_UTF8):
            head = head[len(codecs.BOM_UTF8) :]
        header_text = file_head.removeprefix(codecs.BOM_UTF8) if later_part else head
        first = next(
            csv.reader(
                io.StringIO(header_text.decode(fmt.encoding, "replace"), newline=""), delimiter=fmt.delimiter
            )
        )
        if "\ufffd" in "".join(first):
            raise NeedsExactPath(f"header is not valid {fmt.encoding}")
        width = len(first)
        columns = normalize_header(first) if fmt.header else [f"column_{i + 1}" for i in range(width)]
        if fmt.header and not set(columns) & set(design):
            raise NeedsExactPath(f"header {first!r} shares no column with the design")
        if part is not None and fmt.header and any(is_blank(n) for n in first):
            raise NeedsExactPath("a column without a header name is settled over the whole file")
        if part is not None and any('"' in n or "\n" in n or "\r" in n for n in first):
            raise NeedsExactPath("the header holds a quote or a line break")
        generated = [f"f{i}" for i in range(width)]
        source = _Prefixed(head, stream, fmt.delimiter)
        reader = pacsv.open_csv(
            io.BufferedReader(source, _BLOCK),
            read_options=pacsv.ReadOptions(
                use_threads=False,
                block_size=_BLOCK,
                encoding=fmt.encoding,
                column_names=generated,
                skip_rows=1 if fmt.header and not later_part else 0,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=fmt.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={g: pa.string() for g in generated},
                null_values=[fmt.null_value, ""],
                strings_can_be_null=True,
            ),
        )
        staged = StagedFile(columns=columns)
        unnamed = [i for i, n in enumerate(first) if fmt.header and is_blank(n)]
        filled: set[str] = set()
        line = part.first_line if later_part else 2 if fmt.header else 1
        schema = staged_schema(columns)
        with pq.ParquetWriter(sink, schema) as writer:
            for batch in reader:
                if bad or source.suspect:
                    raise NeedsExactPath(bad[0] if bad else source.suspect)
                n = batch.num_rows
                cols = list(batch.columns)
                if part is not None:
                    _check_part(cols)
                filled.update(columns[i] for i in unnamed if cols[i].null_count < n)
                spans = pa.array(np.ones(n, dtype=np.int64))
                for col in cols:
                    spans = pc.add(spans, pc.fill_null(pc.count_substring(col, "\n"), 0))
                lines = pc.add(pc.subtract(pc.cumulative_sum(spans), spans), line)
                line += int(pc.sum(spans).as_py() or 0)
                nulls = pa.nulls(n, pa.string())
                writer.write_batch(
                    pa.record_batch(
                        [*cols, lines, pa.array([name] * n, pa.string()), nulls, nulls], schema=schema
                    )
                )
                staged.rows += n
        if bad or source.suspect:
            raise NeedsExactPath(bad[0] if bad else source.suspect)
        if fmt.header:
            _settle_unnamed(staged, first, filled)
        return staged
    except NeedsExactPath:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError, EOFError, zlib.error) as e:
        raise NeedsExactPath(f"fast reader stopped: {str(e).splitlines()[0][:200]}") from e


def _check_part(columns: list[pa.Array]) -> None:
    """What a part's batch must satisfy to parse as it would in the whole file. No value holds a
    quote (else the cuts may be wrong: see ``parts``) or a carriage return (pyarrow may drop the
    newline after one that ends its read block, apache/arrow#51368, and a part's blocks are not the
    whole file's). No record nears a block's length: one that spans three blocks fails pyarrow,
    which depends on where the blocks fall."""
    for held in ('"', "\r"):
        if any(pc.any(pc.match_substring(c, held)).as_py() for c in columns):
            raise NeedsExactPath(f"a value holds {held!r}: parsed whole")
    lengths = [pc.fill_null(pc.binary_length(c), 0) for c in columns]
    longest = pc.max(functools.reduce(pc.add, lengths)).as_py() or 0
    if longest + 3 * len(columns) > _BLOCK // 2:  # each field's quotes and delimiter
        raise NeedsExactPath(f"a record of about {longest:,} bytes: parsed whole")


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


class _Prefixed(io.RawIOBase):
    """Replays an already-read head before the rest of the source, watching for what pyarrow hides.

    pyarrow has no strict quoting (it reads ``"bad"x`` as ``badx``) and turns a blank line into a
    row of nulls. A quote with a non-delimiter on both sides, or an empty line, sends the file to
    the exact path, which rejects the first and skips the second while keeping line numbers.
    """

    def __init__(self, head: bytes, rest: IO[bytes], delimiter: str) -> None:
        self._head, self._rest = memoryview(head), rest
        d = re.escape(delimiter.encode())
        # Two patterns that each start with a literal byte, which the regex engine finds at memchr
        # speed: one pattern of both scanned every byte, 16x slower (11 s on SF1 lineitem).
        self._stray_quote = re.compile(rb'"(?<=[^' + d + rb'\r\n"]")(?=[^' + d + rb'\r\n"])')
        self._blank_line = re.compile(rb"\n\r?\n")
        self.suspect: str | None = None
        # As if a line ended just before the file, so a blank first line is a blank line too (a "^"
        # would match at the start of every chunk after the first).
        self._offset, self._tail = 0, b"\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            chunk = bytes(self._head[:n])
            self._head = self._head[n:]
        else:
            chunk = self._rest.read(len(buffer))
            n = len(chunk)
        buffer[:n] = chunk
        window = self._tail + chunk
        if self.suspect is None:
            found = [
                (m.start(), what)
                for what, pattern in (("stray quote", self._stray_quote), ("blank line", self._blank_line))
                if (m := pattern.search(window))
            ]
            if found:
                start, what = min(found)
                self.suspect = f"{what} near byte {max(0, self._offset - len(self._tail) + start)}"
        self._offset += n
        self._tail = window[-2:]
        return n


def _raw_text(fields: list[str], fmt: CsvOptions) -> str:
    """The record as text; bytes that did not decode (kept as surrogate escapes) as ``\\xNN``."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=fmt.delimiter, lineterminator="").writerow(fields)
    return escaped(buf.getvalue())


def _records(stream: IO[bytes], fmt: CsvOptions) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(start line, fields or None, error) for every record; errors never stop the file."""
    encoding = "utf-8-sig" if _is_utf8(fmt.encoding) else fmt.encoding
    text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=fmt.delimiter, strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, None, f"bad quoting: {e}"
            start = reader.line_num + 1
            continue
        except (EOFError, OSError, zlib.error) as e:
            yield (
                start,
                None,
                f"corrupt compressed stream after line {start - 1}: {e}; the rest is unreadable",
            )
            return
        except UnicodeDecodeError as e:  # a wide encoding has bytes no escape can keep
            yield start, None, f"not valid {fmt.encoding} after line {start - 1}: {e}; the rest is unreadable"
            return
        yield start, fields, None
        start = reader.line_num + 1


def _stage_exact(
    stream: IO[bytes], name: str, fmt: CsvOptions, design: list[str], sink: IO[bytes]
) -> StagedFile:
    encoding = fmt.encoding
    records = _records(stream, fmt)
    staged = StagedFile(parser="exact")
    columns: list[str] | None = None
    header: list[str] = []
    width = 0
    if not fmt.header:
        first = next(records, None)
        if first is None:
            staged.notes.append("empty file")
            return staged
        width = len(first[1] or [])
        columns = [f"column_{i + 1}" for i in range(width)]
        records = _chain(first, records)
    else:
        for line, fields, error in records:
            if error is None and fields:
                header, columns, width = fields, normalize_header(fields), len(fields)
                break
            if error is not None:  # nothing usable before the header
                staged.notes.append(f"line {line}: {error} before the header")
        if columns is None:
            staged.notes.append("no header: empty or header-less file")
            return staged
    header_matches = bool(set(columns) & set(design)) or not fmt.header
    unnamed = [i for i, n in enumerate(header) if is_blank(n)] if fmt.header else []
    filled: set[str] = set()
    staged.header_matches = header_matches
    buffers: dict[str, list[Any]] = {c: [] for c in [*columns, *META_COLUMNS]}
    with pq.ParquetWriter(sink, staged_schema(columns)) as writer:
        for line, fields, error in records:
            if fields == [] and error is None:
                continue  # blank line: not a record
            reason = error
            if reason is None and not header_matches:
                reason = f"header shares no column with the design (is the delimiter {fmt.delimiter!r}?)"
            elif reason is None and len(fields or []) != width:
                reason = f"expected {width} fields, got {len(fields or [])}"
            elif reason is None and any(UNDECODED.search(v) for v in fields or []):
                reason = f"bytes that are not valid {encoding}"
            ok = reason is None
            if ok and fields:
                filled.update(columns[i] for i in unnamed if fields[i] not in ("", fmt.null_value))
            for i, c in enumerate(columns):
                value = fields[i] if ok and fields else None
                buffers[c].append(None if value in (None, "", fmt.null_value) else value)
            buffers[LINE].append(line)
            buffers[SOURCE].append(name)
            buffers[REASON].append(reason)
            buffers[RAW].append(None if ok else _raw_text(fields or [], fmt) if fields else "")
            staged.rows += 1
            staged.rejected += 0 if ok else 1
            if len(buffers[LINE]) >= BATCH_ROWS:
                flush(writer, buffers, columns)
        flush(writer, buffers, columns)
    staged.columns = columns
    if fmt.header:
        _settle_unnamed(staged, header, filled)
    return staged


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
