"""A corpus of bad deliveries for an `events` table, one kind per day, with the outcome each must have."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

EVENTS_CONFIG = """
[general]
pipeline_name = "corpus"
input_path = "landing"
output_path = "lake"
start_date = 2024-01-01
end_date = 2024-12-31

[processing]
enable_deduplication = {dedup}

[tables.events]
partition_column = "event_date"
key = ["id"]
evolution = "{evolution}"
dedup_order_by = "ts"
source = {{ prefix = "events" }}
quarantine = {{ max_ratio = 0.02 }}
columns = [
  {{ name = "id", type = "int", nullable = false }},
  {{ name = "name", type = "string" }},
  {{ name = "amount", type = "double" }},
  {{ name = "ts", type = "timestamp" }},
]
"""

HEADER = b"id,name,amount,ts\n"
ROWS = b"1,ann,1.5,2024-01-01 10:00:00\n2,bob,2.5,2024-01-01 11:00:00\n3,cy,3.5,2024-01-01 12:00:00\n"
CLEAN = HEADER + ROWS


@dataclass(frozen=True)
class Kind:
    name: str
    file: str
    content: bytes
    rows_in: int
    loaded: int
    quarantined: int
    what_happens: str


def zstd_bytes(data: bytes) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2], "name": ["ann", "bob"]}), buffer)
    return buffer.getvalue()


def _gzip_truncated() -> bytes:
    whole = gzip.compress(CLEAN + b"".join(b"%d,x,1.0,2024-01-01 10:00:00\n" % i for i in range(4, 400)))
    return whole[: len(whole) * 2 // 3]


KINDS = [
    Kind("clean", "d.csv", CLEAN, 3, 3, 0, "loaded"),
    Kind(
        "extra column",
        "d.csv",
        b"id,name,amount,ts,note\n1,a,1,2024-01-01 10:00:00,hi\n",
        1,
        1,
        0,
        "loaded; evolution=add adds `note` (string) to the table, recorded as schema_before/after",
    ),
    Kind(
        "missing column",
        "d.csv",
        b"id,name,ts\n1,a,2024-01-01 10:00:00\n2,b,2024-01-01 10:00:00\n",
        2,
        2,
        0,
        "loaded; `amount` is a typed null",
    ),
    Kind(
        "reordered columns",
        "d.csv",
        b"ts,amount,id,name\n2024-01-01 10:00:00,1.5,1,a\n",
        1,
        1,
        0,
        "loaded; columns matched by name",
    ),
    Kind(
        "type change",
        "d.csv",
        HEADER + b"1.5,a,1,2024-01-01 10:00:00\n2,b,twelve,2024-01-01 10:00:00\n3,c,3,2024-01-01 10:00:00\n",
        3,
        1,
        2,
        "values that do not cast to the established type: quarantined",
    ),
    Kind(
        "null key",
        "d.csv",
        HEADER + b",a,1,2024-01-01 10:00:00\n2,b,2,2024-01-01 10:00:00\n",
        2,
        2,
        0,
        "loaded; required_columns_not_null fails and blocks downstream",
    ),
    Kind(
        "duplicate key",
        "d.csv",
        HEADER + b"1,old,1,2024-01-01 10:00:00\n1,new,1,2024-01-01 11:00:00\n",
        2,
        2,
        0,
        "loaded; key_unique fails (with enable_deduplication: the older row is deduplicated)",
    ),
    Kind("BOM", "d.csv", b"\xef\xbb\xbf" + CLEAN, 3, 3, 0, "loaded; BOM stripped from the header"),
    Kind("CRLF", "d.csv", CLEAN.replace(b"\n", b"\r\n"), 3, 3, 0, "loaded"),
    Kind(
        "embedded newline",
        "d.csv",
        HEADER + b'1,"two\nlines",1,2024-01-01 10:00:00\n2,b,2,2024-01-01 10:00:00\n',
        2,
        2,
        0,
        "loaded; the quoted newline stays in the value; the next record is line 4",
    ),
    Kind(
        "huge field",
        "d.csv",
        HEADER + b"1," + b"x" * (5 << 20) + b",1,2024-01-01 10:00:00\n",
        1,
        1,
        0,
        "loaded (5 MiB value)",
    ),
    Kind(
        "non-UTF-8",
        "d.csv",
        HEADER + b"1,caf\xe9,1,2024-01-01 10:00:00\n2,b,2,2024-01-01 10:00:00\n",
        2,
        1,
        1,
        "the undecodable row is quarantined with its bytes escaped",
    ),
    Kind("truncated file", "d.csv", CLEAN + b"4,da", 4, 3, 1, "the cut last record is quarantined"),
    Kind("header only", "d.csv", HEADER, 0, 0, 0, "0 rows: the partition is published empty"),
    Kind("empty file", "d.csv", b"", 0, 0, 0, "0 rows: the partition is published empty"),
    Kind(
        "wrong delimiter",
        "d.csv",
        CLEAN.replace(b",", b";"),
        3,
        0,
        3,
        "every row quarantined: header shares no column with the design",
    ),
    Kind(
        "wrong field count",
        "d.csv",
        CLEAN + b"4,d,4,2024-01-01 10:00:00,extra\n",
        4,
        3,
        1,
        "the row is quarantined with raw text and line number",
    ),
    Kind(
        "bad quoting",
        "d.csv",
        HEADER + b'1,"bad"x,1,2024-01-01 10:00:00\n2,b,2,2024-01-01 10:00:00\n',
        2,
        1,
        1,
        "the row is quarantined (strict quoting)",
    ),
    Kind(
        "unparseable value",
        "d.csv",
        HEADER + b"1,a,1,yesterday\n2,b,2,2024-01-01 10:00:00\n",
        2,
        1,
        1,
        "quarantined: ts is not a valid timestamp",
    ),
    Kind("gzip", "d.csv.gz", gzip.compress(CLEAN), 3, 3, 0, "loaded"),
    Kind(
        "corrupt gzip",
        "d.csv.gz",
        _gzip_truncated(),
        -1,
        -1,
        -1,
        "rows before the corruption load; the unreadable rest is one quarantined record",
    ),
    Kind(
        "duplicate delivery",
        "copy.csv",
        CLEAN,
        0,
        0,
        0,
        "same sha256 as the clean day's file: kept in raw, not loaded; no_duplicate_delivery warns",
    ),
    Kind(
        "blank lines",
        "d.csv",
        HEADER + b"\n1,a,1,2024-01-01 10:00:00\n\n\n2,b,2,2024-01-01 10:00:00\n",
        2,
        2,
        0,
        "loaded; blank lines are not records",
    ),
    Kind("bzip2", "d.csv.bz2", bz2.compress(CLEAN), 3, 3, 0, "loaded"),
    Kind("zstd", "d.csv.zst", zstd_bytes(CLEAN), 3, 3, 0, "loaded"),
    Kind(
        "lying suffix",
        "d.csv.gz",
        HEADER + ROWS.replace(b"ann", b"ada").replace(b"bob", b"ben"),  # not the clean day's bytes
        3,
        3,
        0,
        "loaded as the plain text its bytes are; files_as_declared warns, naming the suffix",
    ),
    Kind(
        "UTF-16 with a byte-order mark",
        "d.csv",
        CLEAN.decode().encode("utf-16"),
        3,
        3,
        0,
        'decoded as UTF-16; files_as_declared warns: set csv.encoding = "utf-16"',
    ),
    Kind(
        "Parquet under a CSV table",
        "d.csv",
        parquet_bytes(),
        0,
        0,
        0,
        "not staged, its bytes kept in raw; files_as_declared warns: looks like a Parquet file",
    ),
    Kind(
        "trailing delimiter",
        "d.csv",
        b"id,name,amount,ts,\n" + ROWS.replace(b"\n", b",\n"),
        3,
        3,
        0,
        "loaded; the empty unnamed last column is dropped, never added as a column",
    ),
    Kind(
        "messy header",
        "d.csv",
        b" ID ,Name,AMOUNT,Ts\n1,a,1,2024-01-01 10:00:00\n",
        1,
        1,
        0,
        "loaded; header names made snake_case",
    ),
]

FIRST_DAY = dt.date(2024, 1, 1)


def day_of(index: int) -> str:
    return (FIRST_DAY + dt.timedelta(days=index)).isoformat()


def write_corpus(landing: Path) -> dict[str, Kind]:
    """One delivery per kind, kind i on day i; returns day -> kind."""
    by_day = {}
    for i, kind in enumerate(KINDS):
        folder = landing / "events" / day_of(i)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / kind.file).write_bytes(kind.content)
        by_day[day_of(i)] = kind
    return by_day


def write_config(path: Path, *, dedup: bool = False, evolution: str = "add") -> Path:
    path.write_text(EVENTS_CONFIG.format(dedup=str(dedup).lower(), evolution=evolution))
    return path
