"""The dump's parse of one delivered file, without Spark: its compression and encoding come from its
bytes, a file that is not CSV text stages nothing and is named, and a column without a header name
is dropped when it is empty in every row (the trailing-delimiter export), never called `column`."""

from __future__ import annotations

import bz2
import gzip
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dp_assets_tests.bad_inputs import CLEAN, HEADER, ROWS, parquet_bytes, write_config, zstd_bytes
from spark_jobs.contract import CsvOptions
from spark_jobs.dumping.staging import StagedFile, stage_file

DESIGN = ["id", "name", "amount", "ts"]


def stage(content: bytes, name: str = "d.csv", **fmt: str) -> tuple[StagedFile, list[dict]]:
    sink = io.BytesIO()
    staged = stage_file(lambda: io.BytesIO(content), name, CsvOptions(**fmt), DESIGN, sink)
    rows = pq.read_table(io.BytesIO(sink.getvalue())).to_pylist() if sink.getvalue() else []
    return staged, rows


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("d.csv.gz", gzip.compress(CLEAN)),
        ("d.csv.bz2", bz2.compress(CLEAN)),
        ("d.csv.zst", zstd_bytes(CLEAN)),
    ],
)
def test_each_compression_is_read_by_its_bytes(name: str, content: bytes) -> None:
    staged, rows = stage(content, name)
    assert (staged.rows, staged.columns, staged.warnings) == (3, DESIGN, [])
    assert [r["name"] for r in rows] == ["ann", "bob", "cy"]


@pytest.mark.parametrize(
    ("name", "content", "named"),
    [
        ("d.csv.gz", CLEAN, "its suffix says gzip, but its bytes are not compressed"),
        ("d.csv.gz", zstd_bytes(CLEAN), "its suffix says gzip, but its bytes are zstd"),
        ("d.csv", gzip.compress(CLEAN), "its suffix names no compression, but its bytes are gzip"),
    ],
)
def test_a_suffix_that_lies_is_named_and_the_bytes_are_read(name: str, content: bytes, named: str) -> None:
    staged, rows = stage(content, name)
    assert staged.rows == 3 and [r["id"] for r in rows] == ["1", "2", "3"]
    assert staged.warnings == [f"{named}: read as such"]


def test_utf16_with_a_byte_order_mark_is_decoded_and_the_setting_named() -> None:
    staged, rows = stage(CLEAN.decode().encode("utf-16"))
    assert (staged.rows, staged.rejected, staged.columns) == (3, 0, DESIGN)
    assert [r["name"] for r in rows] == ["ann", "bob", "cy"]
    (warning,) = staged.warnings
    assert "UTF-16 text (byte-order mark)" in warning and 'set csv.encoding = "utf-16"' in warning
    declared, _ = stage(CLEAN.decode().encode("utf-16"), encoding="utf-16")
    assert (declared.rows, declared.warnings) == (3, [])


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [(parquet_bytes(), "a Parquet file"), (b"\x00\x01\x02garbage\x00" * 50, "binary data (NUL bytes)")],
)
def test_a_file_that_is_not_text_stages_nothing_and_is_named(content: bytes, looks_like: str) -> None:
    staged, rows = stage(content)
    assert (staged.rows, staged.columns, rows) == (0, [], [])
    assert staged.warnings == [
        f"looks like {looks_like}, not CSV text: not staged, its bytes stay in the raw zone"
    ]


@pytest.mark.parametrize("exact", [False, True], ids=["fast path", "exact path"])
def test_a_trailing_delimiter_adds_no_column(exact: bool) -> None:
    body = b"id,name,amount,ts,\n" + ROWS.replace(b"\n", b",\n")
    if exact:  # a record with a field too many sends the file to the exact path
        body += b"4,d,4,2024-01-01 10:00:00,,extra\n"
    staged, rows = stage(body)
    assert staged.columns == DESIGN and staged.parser == ("exact" if exact else "arrow")
    assert "column 5 has no header name and no value in any row: dropped" in staged.notes
    assert [r["amount"] for r in rows][:3] == ["1.5", "2.5", "3.5"]


def test_an_unnamed_column_with_values_is_kept_as_unnamed_and_named() -> None:
    staged, _ = stage(HEADER.replace(b"\n", b",\n") + b"1,a,1,2024-01-01 10:00:00,surprise\n")
    assert staged.columns == [*DESIGN, "unnamed_5"]
    assert staged.warnings == ["column 5 has no header name but holds values: staged as unnamed_5"]


def test_dp_validate_reads_the_newest_delivery_by_its_bytes(tmp_path: Path) -> None:
    from dp_assets.config.loader import load_config_from
    from dp_assets.validate import validate

    loaded = load_config_from(str(write_config(tmp_path / "config.toml")), home=tmp_path)
    folder = tmp_path / "landing" / "events" / "2024-01-01"
    folder.mkdir(parents=True)
    (folder / "a.csv.zst").write_bytes(zstd_bytes(b"id,name,amount,ts,\n" + ROWS.replace(b"\n", b",\n")))
    assert validate(loaded, None) == []  # zstd read; the unnamed trailing column is no column
    (folder / "b.csv").write_bytes(parquet_bytes())
    (finding,) = validate(loaded, None)
    assert (finding.severity, finding.file) == ("warning", "events/2024-01-01/b.csv")
    assert "looks like a Parquet file, not CSV text" in finding.message


JSONL = (
    b'{"id": 1, "name": "ann", "amount": 1.5, "ts": "2024-01-01 10:00:00", "tags": ["a", "b"]}\n'
    b'{"id": 2, "Name": "bob", "amount": null, "extra": {"k": true}}\n'
    b"\n"
    b'{"id": 3, "name": "cy"\n'
    b"[1, 2]\n"
    b'{"id": "twelve", "name": "caf\xe9"}\n'
)


def test_json_lines_become_rows_and_every_bad_line_a_rejected_record() -> None:
    staged, rows = stage_as("jsonl", JSONL, "d.jsonl")
    assert staged.columns == ["id", "name", "amount", "ts", "tags", "name_2", "extra"]
    assert (staged.rows, staged.rejected) == (5, 3)  # the blank line is no record
    by_line = {r["_line"]: r for r in rows}
    assert by_line[1]["tags"] == '["a","b"]' and by_line[1]["amount"] == "1.5"  # nested: JSON text
    assert (
        by_line[2]["name_2"] == "bob" and by_line[2]["extra"] == '{"k":true}' and by_line[2]["amount"] is None
    )
    assert (
        by_line[4]["_reject_reason"].startswith("not valid JSON")
        and by_line[4]["_raw_text"] == '{"id": 3, "name": "cy"'
    )
    assert by_line[5]["_reject_reason"] == "not a JSON object but list"
    assert by_line[6]["_reject_reason"] == "bytes that are not valid in the file's encoding"
    assert by_line[6]["_raw_text"] == '{"id": "twelve", "name": "caf\\xe9"}'


def test_json_lines_compressed_with_a_lying_suffix() -> None:
    staged, _ = stage_as("jsonl", bz2.compress(JSONL), "d.jsonl.gz")
    assert staged.rows == 5 and staged.warnings == [
        "its suffix says gzip, but its bytes are bzip2: read as such"
    ]


def test_parquet_columns_become_text_with_row_numbers() -> None:
    import datetime as dt

    import pyarrow as pa

    table = pa.table(
        {
            "id": pa.array([1, 2, None], pa.int64()),
            "Dep Time": pa.array([1.5, None, 3.0]),
            "ts": pa.array(
                [dt.datetime(2024, 1, 1, 10), None, dt.datetime(2024, 1, 1, 12)], pa.timestamp("us")
            ),
            "point": pa.array([{"x": 1, "y": 2}, None, {"x": 3, "y": 4}]),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    staged, rows = stage_as("parquet", buffer.getvalue(), "d.parquet")
    assert (staged.columns, staged.rows, staged.rejected, staged.warnings) == (
        ["id", "dep_time", "ts", "point"],
        3,
        0,
        [],
    )
    assert [r["_line"] for r in rows] == [1, 2, 3]  # a Parquet file has no lines: row numbers
    assert rows[0]["point"] == '{"x":1,"y":2}' and rows[0]["dep_time"] == "1.5" and rows[2]["id"] is None
    assert rows[0]["ts"].startswith("2024-01-01 10:00:00")


def test_a_file_that_is_not_parquet_is_one_rejected_record() -> None:
    staged, rows = stage_as("parquet", CLEAN, "d.parquet")
    assert (staged.rows, staged.rejected, staged.columns) == (1, 1, [])
    (row,) = rows
    assert row["_reject_reason"].startswith("not a valid Parquet file") and row["_source_file"] == "d.parquet"
    assert staged.warnings == ["looks like text, not a Parquet file: one rejected record"]


def stage_as(file_format: str, content: bytes, name: str) -> tuple[StagedFile, list[dict]]:
    sink = io.BytesIO()
    staged = stage_file(lambda: io.BytesIO(content), name, CsvOptions(), DESIGN, sink, file_format)
    rows = pq.read_table(io.BytesIO(sink.getvalue())).to_pylist() if sink.getvalue() else []
    return staged, rows


@pytest.mark.parametrize(
    ("file_format", "name", "content"),
    [
        ("jsonl", "a.jsonl", b'\n{"id": 1, "name": "a", "amount": 1, "ts": "x", "note": "n"}\n'),
        ("parquet", "a.parquet", None),
    ],
)
def test_dp_validate_compares_each_formats_fields(
    tmp_path: Path, file_format: str, name: str, content
) -> None:
    import pyarrow as pa

    from dp_assets.config.loader import load_config_from
    from dp_assets.validate import validate

    config = write_config(tmp_path / "config.toml")
    config.write_text(
        config.read_text().replace('prefix = "events"', f'prefix = "events", format = "{file_format}"')
    )
    loaded = load_config_from(str(config), home=tmp_path)
    folder = tmp_path / "landing" / "events" / "2024-01-01"
    folder.mkdir(parents=True)
    if content is None:
        buffer = io.BytesIO()
        pq.write_table(pa.table({"id": [1], "name": ["a"], "amount": [1.0], "note": ["n"]}), buffer)
        content = buffer.getvalue()
    (folder / name).write_bytes(content)
    findings = {(f.severity, f.column) for f in validate(loaded, None)}
    expected = {("warning", "note")} | ({("error", "ts")} if file_format == "parquet" else set())
    assert findings == expected


def test_a_compressed_parquet_file_is_read() -> None:
    staged, rows = stage_as("parquet", zstd_bytes(parquet_bytes()), "d.parquet.zst")
    assert (staged.rows, staged.rejected, staged.warnings) == (2, 0, [])
    assert [r["name"] for r in rows] == ["ann", "bob"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"id": 1, "name": "\\ud83d"}', "an unpaired UTF-16 surrogate escape"),
        (b'{"id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),
    ],
    ids=["lone surrogate", "deep nesting"],
)
def test_json_that_cannot_become_text_is_a_rejected_line(line: bytes, reason: str) -> None:
    staged, rows = stage_as("jsonl", b'{"id": 2, "name": "ok"}\n' + line + b"\n", "d.jsonl")
    assert (staged.rows, staged.rejected) == (2, 1)
    assert rows[1]["_reject_reason"].startswith(reason) and rows[1]["_line"] == 2


def test_broken_streams_and_encodings_end_the_file_with_one_rejected_record() -> None:
    whole = bytearray(
        gzip.compress(CLEAN + b"".join(b"%d,x,1.0,2024-01-01 10:00:00\n" % i for i in range(9, 3000)))
    )
    whole[len(whole) // 2 : len(whole) // 2 + 8] = b"\xff" * 8  # a damaged deflate stream (zlib.error)
    staged, rows = stage(bytes(whole), "d.csv.gz")
    assert staged.rows > 3 and staged.rejected >= 1  # no crash: what decompresses wrong is quarantined
    odd = CLEAN.decode().encode("utf-16") + b"\x00\xd8"  # an unpaired high surrogate at the end
    staged, rows = stage(odd)
    assert staged.rows == 4 and "not valid utf-16 after line" in rows[-1]["_reject_reason"]
    staged, rows = stage_as("jsonl", "\n".join(['{"id": 1}'] * 3).encode("utf-16") + b"\x00\xd8", "d.jsonl")
    assert staged.rejected == 1 and rows[-1]["_reject_reason"].startswith("unreadable after line")


def test_a_file_whose_names_match_nothing_is_rejected_whole_in_every_format() -> None:
    staged, rows = stage_as("jsonl", b'{"foo": 1}\n{"bar": 2}\n', "d.jsonl")
    assert (staged.rows, staged.rejected, staged.header_matches) == (2, 2, False)
    assert rows[0]["_reject_reason"].startswith("the file's fields share no name with the design")
    staged, _ = stage_as(
        "parquet", parquet_bytes().replace(b"name", b"nome").replace(b"id", b"xx"), "d.parquet"
    )
    assert staged.rejected == staged.rows


def test_parquet_with_repeated_column_names_and_odd_types_stages() -> None:
    import pyarrow as pa

    table = pa.Table.from_arrays(
        [pa.array([1, 2]), pa.array(["a", "b"]), pa.array([b"\x00" * 16, None], pa.binary(16))],
        names=["id", "id", "uuid"],
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    staged, rows = stage_as("parquet", buffer.getvalue(), "d.parquet")
    assert staged.columns == ["id", "id_2", "uuid"] and staged.rejected == 0
    assert rows[0]["id_2"] == "a" and rows[0]["uuid"] == "\x00" * 16


def test_text_details_that_are_not_what_they_seem() -> None:
    staged, rows = stage_as("jsonl", b'\xef\xbb\xbf{"id": 1, "name": "bom"}\n', "d.jsonl")
    assert (staged.rows, staged.rejected, rows[0]["name"]) == (1, 0, "bom")  # a UTF-8 BOM is no error
    staged, _ = stage(HEADER + b"1,a\x00b,1,2024-01-01 10:00:00\n")  # one NUL is not a binary file
    assert staged.rows == 1 and staged.warnings == []
    staged, _ = stage(b"id,name,amount,ts,#\n1,a,1,2024-01-01 10:00:00,x\n")
    assert staged.columns == [*DESIGN, "unnamed_5"]  # never `column`


def test_a_json_line_too_long_to_hold_is_rejected_and_the_next_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spark_jobs.dumping import records

    monkeypatch.setattr(records, "MAX_LINE", 100)
    monkeypatch.setattr(records, "RAW_KEPT", 10)
    long = b'{"id": 2, "name": "' + b"x" * 5000 + b'"}'
    body = b'{"id": 1, "name": "a"}\n' + long + b'\n{"id": 3, "name": "c"}\n'
    staged, rows = stage_as("jsonl", body, "d.jsonl")
    assert (staged.rows, staged.rejected) == (3, 1)
    assert [(r["_line"], r["id"]) for r in rows] == [(1, "1"), (2, None), (3, "3")]
    assert rows[1]["_reject_reason"] == "longer than 100 characters: its first 10 are kept here"
    assert rows[1]["_raw_text"] == '{"id": 2, '


@pytest.mark.parametrize(
    "value",
    [True, False, 0, -7, 2**70, 1.5, 1e-07, 1e300, -0.0, float("nan"), float("inf"), [1, {"a": None}]],
)
def test_a_json_value_becomes_the_text_json_writes(value: object) -> None:
    import json

    from spark_jobs.dumping.records import as_text

    assert as_text(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    ("compress", "opens"),
    [(lambda b: b, 1), (gzip.compress, 1), (zstd_bytes, 1), (bz2.compress, 2)],
    ids=["plain", "gzip", "zstd", "bzip2 (a block is larger than the head)"],
)
def test_sniffing_reads_the_stored_head_once(compress, opens: int) -> None:
    """One GET per file on S3: only a head too short to decompress from is read again."""
    import random

    from spark_jobs.dumping.sniff import sniff

    rows = "".join(f"{i},{random.Random(i).random()},x\n" for i in range(30_000))
    content = compress(("id,amount,name\n" + rows).encode("utf-16"))
    opened = []

    def open_source() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(content)

    sniffed = sniff(open_source, "d.csv", "utf-8")
    assert (sniffed.encoding, sniffed.not_text, len(opened)) == ("utf-16", None, opens)


def test_a_lone_surrogate_decoded_from_the_encoding_itself_is_a_rejected_line() -> None:
    """UTF-7's "+2D0-" decodes to a lone surrogate without any JSON escape."""
    sink = io.BytesIO()
    content = b'{"id": 1, "name": "a"}\n{"id": 2, "name": "+2D0-"}\n'
    utf7 = CsvOptions(encoding="utf-7")
    staged = stage_file(lambda: io.BytesIO(content), "d.jsonl", utf7, DESIGN, sink, "jsonl")
    assert (staged.rows, staged.rejected) == (2, 1)


def test_a_clean_file_read_in_many_blocks_stays_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block boundary right after a line's first byte is no blank line (it once was: every
    chunk was searched as if it started the file)."""
    from spark_jobs.dumping import staging

    monkeypatch.setattr(staging, "_BLOCK", 1000)
    body = HEADER + b"".join(b"%d,name%d,%d.5,2024-01-01 10:00:00\n" % (i, i, i) for i in range(2000))
    staged, _ = stage(body)
    assert (staged.parser, staged.notes, staged.rows) == ("arrow", [], 2000)
    blank = HEADER + b"\n" + ROWS
    assert stage(blank)[0].notes[0].startswith("blank line near byte")


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b'a,b\nc,"d"x\n', "stray quote near byte 8"), (b"a,b\nc,d\n\ne,f\n", "blank line near byte 7")],
)
def test_what_sends_a_file_to_the_exact_path_is_found_across_any_block_boundary(
    content: bytes, expected: str
) -> None:
    from spark_jobs.dumping.staging import _Prefixed

    for size in range(1, len(content) + 1):
        source = _Prefixed(content[:size], io.BytesIO(content[size:]), ",")  # the head, then blocks
        while source.read(size):
            pass
        assert source.suspect == expected, size


@pytest.mark.parametrize("size", [2, 5, 7, 20])
def test_parquet_batches_have_the_asked_size_whatever_the_row_groups(size: int) -> None:
    from spark_jobs.dumping.staged import batches

    sink = io.BytesIO()
    pq.write_table(pa.table({"n": list(range(15))}), sink, row_group_size=5)
    parquet = pq.ParquetFile(io.BytesIO(sink.getvalue()))
    read = list(batches(parquet, size))
    assert [b.num_rows for b in read] == [size] * (15 // size) + ([15 % size] if 15 % size else [])
    assert [v for b in read for v in b.column(0).to_pylist()] == list(range(15))
