"""Validation runs: check every design and SQL file against upstream and Spark, loading nothing.

What a nightly load would trip over, found before it runs:

- upstream columns still match each design: the PostgreSQL catalog (information_schema), or the
  header of the newest delivered file; a missing column is an error, an extra one a warning, a
  changed type (PostgreSQL) an error;
- every SQL file parses, reads only known tables and columns, and the files form no cycle (sqlglot),
  then plans in Spark (`EXPLAIN` against empty tables of the declared schemas);
- each design agrees with what is published: a column's type may not change under published data.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from dp_assets.config.loader import ConfigError, LoadedConfig
from dp_assets.config.model import FileSource, PostgresSource, Table
from dp_assets.lake import Lake
from dp_assets.launchers.runtime import sql_conf
from dp_assets.stages.sniff import Sniffed, decompressed, sniff
from dp_assets.stages.staged import normalize_header
from dp_assets.storage import read_json_if_exists

Severity = Literal["error", "warning"]

# PostgreSQL data types (information_schema) a declared Spark type reads without loss.
PG_TYPES = {
    "string": {"text", "character varying", "character", "uuid", "json", "jsonb"},
    "int": {"integer", "smallint"},
    "bigint": {"bigint", "integer", "smallint"},
    "long": {"bigint", "integer", "smallint"},
    "smallint": {"smallint"},
    "double": {"double precision", "real", "numeric", "integer", "smallint", "bigint"},
    "float": {"real"},
    "boolean": {"boolean"},
    "date": {"date"},
    "timestamp": {"timestamp without time zone", "timestamp with time zone"},
}


@dataclass(frozen=True)
class Finding:
    """One validation result, shaped like an asset check result: what, where, how bad."""

    check: str
    severity: Severity
    table: str
    message: str
    file: str | None = None
    column: str | None = None

    def render(self) -> str:
        where = " ".join(
            x for x in (self.table, f"({self.file})" if self.file else "", self.column or "") if x
        )
        return f"{self.severity.upper():7} {self.check:<22} {where}: {self.message}"


def _expected_pg_types(declared: str) -> set[str] | None:
    t = declared.replace(" ", "").lower()
    return {"numeric"} if t.startswith("decimal") else PG_TYPES.get(t)


def check_postgres(name: str, table: Table, source: PostgresSource) -> list[Finding]:
    from dp_assets.stages.postgres import connect

    try:
        conn, label = connect(name, source)
        with conn:
            rows = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (source.schema_name, source.table),
            ).fetchall()
    except Exception as e:  # every failure to reach upstream is one finding
        message = getattr(e, "description", None) or str(e).strip()
        return [Finding("upstream_reachable", "error", name, message)]
    where = f"{source.schema_name}.{source.table} on {label}"
    if not rows:
        return [Finding("upstream_columns", "error", name, f"{where} does not exist (or has no columns)")]
    upstream = dict(rows)
    return _compare_columns(name, table, upstream, where, types=True)


def _compare_columns(
    name: str, table: Table, upstream: dict[str, str], where: str, *, types: bool
) -> list[Finding]:
    findings = []
    for col in table.columns:
        if col.name not in upstream:
            findings.append(
                Finding(
                    "upstream_columns",
                    "error",
                    name,
                    f"column {col.name!r} ({col.type}) is missing upstream in {where}; it would load as "
                    "null. Remove it from the design or get it restored upstream",
                    column=col.name,
                )
            )
        elif types and (expected := _expected_pg_types(col.type)) and upstream[col.name] not in expected:
            findings.append(
                Finding(
                    "upstream_types",
                    "error",
                    name,
                    f"column {col.name!r} is {upstream[col.name]} upstream in {where}, but the design "
                    f"declares {col.type}; values may not cast. Change the design's type or the upstream "
                    "column",
                    column=col.name,
                )
            )
    declared = {c.name for c in table.columns}
    for extra in [c for c in upstream if c not in declared]:
        findings.append(
            Finding(
                "upstream_columns",
                "warning",
                name,
                f"upstream has column {extra!r} that the design lacks ({where}); evolution = "
                f"{table.evolution!r} decides what the load does with it",
                column=extra,
            )
        )
    return findings


def check_newest_delivery(lake: Lake, name: str, table: Table, source: FileSource) -> list[Finding]:
    """The header of the newest delivered file against the design (column names only)."""
    files = [
        f
        for f in lake.landing.list(source.prefix.strip("/"))
        if not PurePosixPath(f.path).name.startswith((".", "_"))
    ]
    if not files:
        return [
            Finding(
                "upstream_columns",
                "warning",
                name,
                f"no delivery under {lake.landing.uri(source.prefix)} to compare with the design",
            )
        ]
    newest = max(files, key=lambda f: f.path)
    where = f"the newest delivery {lake.landing.uri(newest.path)}"
    sniffed = sniff(
        lambda: lake.landing.open_read(newest.path), newest.path, source.csv.encoding, source.format
    )
    notes = [
        Finding("upstream_columns", "warning", name, f"{where}: {w}", file=newest.path)
        for w in sniffed.warnings
    ]
    expected = "a Parquet file" if source.format == "parquet" else None
    if sniffed.not_text != expected:
        return notes  # no fields to compare: the dump will not stage it as the design expects
    header = delivered_fields(lake, newest.path, source, sniffed)
    if header is None:
        message = f"could not read the fields of {where} as {source.format}: compare it by hand"
        return [*notes, Finding("upstream_columns", "warning", name, message, file=newest.path)]
    columns = {c: "" for h, c in zip(header, normalize_header(header), strict=True) if h.strip()}
    return notes + [
        Finding(**{**asdict(f), "file": newest.path})
        for f in _compare_columns(name, table, columns, where, types=False)
    ]


def delivered_fields(lake: Lake, path: str, source: FileSource, sniffed: Sniffed) -> list[str] | None:
    """The field names of a delivery as its format gives them: a CSV header, the keys of the JSON
    objects in its first 64 KiB, a Parquet file's columns; None when they cannot be read."""
    unreadable = (OSError, EOFError, zlib.error, pa.ArrowInvalid)
    if source.format == "parquet":
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as local:
            try:
                with lake.landing.open_read(path) as raw:
                    shutil.copyfileobj(decompressed(raw, sniffed.compression), local)
                local.seek(0)
                return pq.read_schema(local).names
            except unreadable:
                return None
    head = b""
    with lake.landing.open_read(path) as raw, contextlib.suppress(*unreadable):
        head = decompressed(raw, sniffed.compression).read(1 << 16)  # a cut stream: what decompresses
    text = head.decode(sniffed.encoding or source.csv.encoding, errors="replace").lstrip("\ufeff")
    if source.format == "jsonl":
        keys: dict[str, None] = {}
        for line in text.splitlines():  # writers that omit null fields: the union of a few objects
            with contextlib.suppress(ValueError, RecursionError):
                if isinstance(value := json.loads(line), dict):
                    keys.update(dict.fromkeys(value))
        return list(keys) or None
    return next(csv.reader(io.StringIO(text), delimiter=source.csv.delimiter), [])


def check_published_schema(lake: Lake, name: str, table: Table) -> list[Finding]:
    established = read_json_if_exists(lake.store, lake.schema_path(name))
    if not established:
        return []
    findings = []
    design = {c.name: c.type for c in table.columns}
    for col in established["columns"]:
        if col["origin"] == "design" and col["name"] in design and design[col["name"]] != col["type"]:
            findings.append(
                Finding(
                    "design_matches_catalog",
                    "error",
                    name,
                    f"the design declares {col['name']!r} as {design[col['name']]}, but published "
                    f"partitions hold {col['type']}; revert the type or reload into a new table",
                    column=col["name"],
                )
            )
    return findings


def check_sql(loaded: LoadedConfig, spark: Any | None) -> list[Finding]:
    """Parse, resolve and plan every SQL file; Spark plans against empty tables of the designs."""
    from dp_assets.stages.derive import discover_transforms, published_schemas

    try:
        transforms = discover_transforms(loaded)
    except ConfigError as e:
        text = str(e)
        file = next((PurePosixPath(f).name for f in loaded.sql_files if PurePosixPath(f).name in text), None)
        return [Finding("sql_parses", "error", file.removesuffix(".sql") if file else "-", text, file=file)]
    if spark is None or not transforms:
        return []
    for key, value in sql_conf(loaded.config.spark.ansi).items():  # plan what the jobs will run
        spark.conf.set(key, value)
    findings = []
    for name, columns in published_schemas(loaded).items():
        ddl = ", ".join(f"`{c}` {t}" for c, t in columns.items())
        spark.createDataFrame([], ddl).createOrReplaceTempView(name)
    for name, transform in transforms.items():  # dependency order: a transform's view is ready first
        try:
            frame = spark.sql(transform.sql)
            frame.createOrReplaceTempView(name)
        except Exception as e:  # Spark's analysis errors are the finding
            first = str(e).strip().splitlines()[0]
            findings.append(
                Finding("sql_plans", "error", name, f"Spark cannot plan it: {first}", file=transform.file)
            )
    return findings


def validate(loaded: LoadedConfig, spark: Any | None = None) -> list[Finding]:
    """Every check over every design and SQL file; nothing is loaded or written."""
    lake = Lake(loaded)
    findings: list[Finding] = []
    for name, table in loaded.config.tables.items():
        if isinstance(table.source, PostgresSource):
            findings += check_postgres(name, table, table.source)
        else:
            findings += check_newest_delivery(lake, name, table, table.source)
        findings += check_published_schema(lake, name, table)
    findings += check_sql(loaded, spark)
    return findings


def report(findings: list[Finding], loaded: LoadedConfig) -> str:
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    tables = len(loaded.config.tables)
    lines = [f.render() for f in sorted(findings, key=lambda f: (f.severity != "error", f.table))]
    lines.append(
        f"validated {tables} table(s) and {len(loaded.sql_files)} SQL file(s) of {loaded.provenance.uri}: "
        f"{errors} error(s), {warnings} warning(s)"
    )
    return "\n".join(lines)


def local_spark(ansi: bool) -> Any:
    """A small in-process Spark session for planning SQL (nothing is read or written), with the SQL
    settings every job runs with (``[spark] ansi``, UTC), so it plans what the target will run."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[1]")
        .appName("dp-validate")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
    )
    for key, value in sql_conf(ansi).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
