"""The dump's parse of one delivered file, without Spark: its compression and encoding come from its
bytes, a file that is not CSV text stages nothing and is named, and a column without a header name
is dropped when it is empty in every row (the trailing-delimiter export), never called `column`."""

from __future__ import annotations

import bz2
import gzip
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dp_assets.config.model import CsvFormat
from dp_assets.stages.staging import StagedFile, stage_file
from dp_assets_tests.bad_inputs import CLEAN, HEADER, ROWS, parquet_bytes, write_config, zstd_bytes

DESIGN = ["id", "name", "amount", "ts"]


def stage(content: bytes, name: str = "d.csv", **fmt: str) -> tuple[StagedFile, list[dict]]:
    sink = io.BytesIO()
    staged = stage_file(lambda: io.BytesIO(content), name, CsvFormat(**fmt), DESIGN, sink)
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
