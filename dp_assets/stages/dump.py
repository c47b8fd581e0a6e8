"""dump: copy a day's delivery from the landing zone into the raw zone, with a manifest.

The copy is one streaming pass per file: bytes are hashed, written and counted as CSV records
together, so memory stays bounded whatever the delivery size.
"""

import csv
import datetime as dt
import hashlib
import io
from typing import Any

import dagster as dg

from dp_assets.config.model import CsvFormat, Table
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.lake import Lake
from dp_assets.storage import Store, write_json

csv.field_size_limit(2**31 - 1)


class MissingDelivery(dg.Failure):
    pass


class _HashingTee(io.RawIOBase):
    """Reads from a source while hashing and copying every byte to a sink."""

    def __init__(self, source: io.RawIOBase | Any, sink: Any) -> None:
        self._source, self._sink = source, sink
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._source.read(len(buffer))
        n = len(chunk)
        buffer[:n] = chunk
        self.sha256.update(chunk)
        self._sink.write(chunk)
        self.bytes += n
        return n


def copy_counting_rows(
    src: Store, src_path: str, dst: Store, dst_path: str, fmt: CsvFormat
) -> dict[str, Any]:
    """Copy one CSV file; return its bytes, sha256 and data records (header and blank lines excluded)."""
    with src.open_read(src_path) as fin, dst.open_write(dst_path) as fout:
        tee = _HashingTee(fin, fout)
        text = io.TextIOWrapper(
            io.BufferedReader(tee, 1 << 20), encoding=fmt.encoding, errors="replace", newline=""
        )
        records = sum(1 for rec in csv.reader(text, delimiter=fmt.delimiter) if rec)
        while text.read(1 << 20):  # drain anything the reader did not pull (there should be nothing)
            pass
    rows = max(records - 1, 0) if fmt.header else records
    return {"bytes": tee.bytes, "sha256": tee.sha256.hexdigest(), "rows": rows}


def dump_partition(lake: Lake, name: str, day: str) -> dict[str, Any]:
    """Copy the delivery of one table and day into the raw zone and write its manifest."""
    table = lake.table(name)
    prefix = lake.delivery_prefix(name, day)
    files = [f for f in lake.landing.list(prefix) if not f.path.rsplit("/", 1)[-1].startswith((".", "_"))]
    if not files:
        raise MissingDelivery(
            description=(
                f"no delivery for table {name!r}, partition {day}: "
                f"nothing under {lake.landing.uri(prefix)}/. "
                f"Upstream drops files at <input_path>/{table.source.prefix}/<YYYY-MM-DD>/; "
                "check the date, or run `dp demo` to write the demo deliveries."
            ),
            metadata={"partition": day, "expected_location": lake.landing.uri(prefix)},
        )
    raw_prefix = lake.raw_prefix(name, day)
    lake.store.delete_prefix(raw_prefix)  # a re-dump replaces the partition's files, never adds to them
    entries = []
    for f in files:
        rel = f.path[len(prefix) + 1 :]
        stats = copy_counting_rows(lake.landing, f.path, lake.store, f"{raw_prefix}/{rel}", table.source.csv)
        if stats["bytes"] != f.size:
            raise dg.Failure(
                f"table {name!r}, partition {day}: copied {stats['bytes']} bytes of "
                f"{lake.landing.uri(f.path)} "
                f"but the delivery lists {f.size}; the file changed during the copy — re-run the dump"
            )
        entries.append({"file": rel, "source": lake.landing.uri(f.path), **stats})
    manifest = {
        "table": name,
        "partition": day,
        "files": entries,
        "rows": sum(e["rows"] for e in entries),
        "bytes": sum(e["bytes"] for e in entries),
        "sha256": hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest(),
        "dumped_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(lake.store, lake.manifest_path(name, day), manifest)
    return manifest


def build_dump_asset(name: str, table: Table, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", name],
        group_name="dump",
        description=f"Verified copy of the day's {name} delivery in the raw zone, with a manifest.",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"csv"},
        metadata={"source_prefix": table.source.prefix},
    )
    def dump(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource) -> dg.MaterializeResult:
        lake = Lake(pipeline.loaded)
        manifests = {day: dump_partition(lake, name, day) for day in context.partition_keys}
        for day, m in manifests.items():
            context.log.info(f"{name} {day}: {len(m['files'])} file(s), {m['rows']} rows, {m['bytes']} bytes")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(m["rows"] for m in manifests.values()),
                "bytes": sum(m["bytes"] for m in manifests.values()),
                "files": sum(len(m["files"]) for m in manifests.values()),
                "rows_by_partition": dg.MetadataValue.json({d: m["rows"] for d, m in manifests.items()}),
                "sha256_by_partition": dg.MetadataValue.json({d: m["sha256"] for d, m in manifests.items()}),
                "raw_location": dg.MetadataValue.path(lake.uri(lake.raw_root(name))),
                **pipeline.provenance_metadata(),
            }
        )

    return dump
