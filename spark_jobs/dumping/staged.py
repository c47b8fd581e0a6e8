"""The staged file every format's parser writes: one string column per delivered field (names made
snake_case), then ``_line``, ``_source_file``, ``_reject_reason`` and ``_raw_text``. The load types
it; so its shape, the names and the text of what did not decode are decided here once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs.contract import LINE, STAGED_META

META_COLUMNS = tuple(STAGED_META)
_ARROW_TYPES = {"bigint": pa.int64(), "string": pa.string()}
BATCH_ROWS = 65_536
UNDECODED = re.compile("[\udc80-\udcff]")  # bytes the encoding could not hold, as surrogate escapes


@dataclass
class StagedFile:
    columns: list[str] = field(default_factory=list)  # normalized header
    rows: int = 0  # records staged, rejected ones included
    rejected: int = 0
    parser: str = "arrow"
    notes: list[str] = field(default_factory=list)
    header_matches: bool = True  # False: no header column is in the design (every row rejected)
    # what the file is, where its name or config said otherwise
    warnings: list[str] = field(default_factory=list)


def snake_case(name: str) -> str:
    """`Dep Time`, `depTime`, `DEP-TIME` -> `dep_time`."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip().lstrip("\ufeff"))
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    return name or "column"


def normalize_header(names: list[str]) -> list[str]:
    out: list[str] = []
    for i, n in enumerate(names):
        base = snake_case(n)
        if is_blank(n) or (base == "column" and n.strip().lower() != "column"):
            base = f"unnamed_{i + 1}"  # no name, or nothing of it left (`#`, `%`)
        candidate, i = base, 2
        while candidate in out:
            candidate, i = f"{base}_{i}", i + 1
        out.append(candidate)
    return out


def is_blank(name: str) -> bool:
    return not name.strip().lstrip("\ufeff")


def staged_schema(columns: list[str]) -> pa.Schema:
    return pa.schema(
        [(c, pa.string()) for c in columns] + [(c, _ARROW_TYPES[t]) for c, t in STAGED_META.items()]
    )


def batches(parquet: pq.ParquetFile, size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches of ``size`` (the last one shorter), read one row group at a time:
    pyarrow's reader over a whole file keeps what it has read until its end (26.0: 288 MB of the
    315 MB staged from SF1 lineitem), over one row group only that group's. Small row groups are
    joined, so a file written in tiny groups is not staged (or scanned) in tiny batches."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for group in range(parquet.num_row_groups):
        for batch in parquet.iter_batches(batch_size=size, row_groups=[group], columns=columns):
            pending.append(batch)
            rows += batch.num_rows
            if rows >= size:
                joined = pa.concat_batches(pending)
                whole = rows - rows % size
                yield from (joined.slice(start, size) for start in range(0, whole, size))
                pending, rows = ([joined.slice(whole)] if rows > whole else []), rows - whole
    if rows:
        yield pa.concat_batches(pending)


def escaped(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def flush(writer: pq.ParquetWriter, buffers: dict[str, list[Any]], columns: list[str]) -> None:
    if not buffers[LINE]:
        return
    writer.write_table(pa.table(buffers, schema=staged_schema(columns)))
    for values in buffers.values():
        values.clear()
