"""Validation runs: check every design and SQL file against upstream and Spark, loading nothing.

What a nightly load would trip over, found before it runs:

- upstream columns still match each design: the PostgreSQL catalog (information_schema), or the
  fields of the newest delivered file; a missing column is an error, an extra one a warning, a
  changed type (PostgreSQL) an error;
- the newest delivery's first records, parsed by the dump's own parser, cast to the declared types
  as the load casts them (in Spark): a column none of whose values cast is an error, one with some
  that do not (rows the load would quarantine) a warning;
- every SQL file parses, reads only known tables and columns, and the files form no cycle (sqlglot),
  then plans in Spark (`EXPLAIN` against empty tables of the declared schemas);
- each design agrees with what is published: a column's type may not change under published data.
"""

from __future__ import annotations

import io
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dp_assets.config.loader import ConfigError, LoadedConfig
from dp_assets.config.model import FileSource, PostgresSource, Table
from dp_assets.lake import Lake
from dp_assets.launchers.runtime import sql_conf
from spark_jobs.contract import LINE, REASON
from spark_jobs.dumping.sniff import Sniffed, decompressed, sniff
from spark_jobs.dumping.staged import StagedFile, staged_schema
from spark_jobs.dumping.staging import stage_file
from spark_jobs.storage import read_json_if_exists

Severity = Literal["error", "warning"]
SAMPLE_BYTES = 1 << 20  # of a delivered text file's content: thousands of records
SAMPLE_ROWS = 10_000  # of a delivered Parquet file
EXAMPLE_CHARS = 80  # of a value quoted in a finding

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


def check_newest_delivery(
    lake: Lake, name: str, table: Table, source: FileSource, spark: Any | None
) -> list[Finding]:
    """The newest delivered file against the design: its fields, and its first records' values cast
    to the declared types (with Spark; ``spark`` None skips the cast)."""
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
    unit = "row" if source.format == "parquet" else "line"
    with tempfile.TemporaryDirectory(prefix="dp-validate-") as folder:
        sample = Path(folder) / "sample.parquet"
        staged, records = stage_sample(lake, newest.path, table, source, sniffed, sample)
        findings = _rejected_records(name, records, where, unit)
        if not staged.columns:
            why = "; ".join(staged.notes) or "an empty file"
            message = f"no field could be read from {where} as {source.format} ({why}): compare it by hand"
            findings.append(Finding("upstream_columns", "warning", name, message))
        else:
            findings += _compare_columns(name, table, dict.fromkeys(staged.columns, ""), where, types=False)
        if spark is not None and records.num_rows and staged.columns:
            sampled = f"{records.num_rows} record(s) of {where}"
            findings += check_delivered_types(spark, name, table, sample, sampled, unit)
    return notes + [Finding(**{**asdict(f), "file": newest.path}) for f in findings]


def stage_sample(
    lake: Lake, path: str, table: Table, source: FileSource, sniffed: Sniffed, into: Path
) -> tuple[StagedFile, pa.Table]:
    """The first records of a delivery, staged by the dump's own parser, also written to ``into``. A
    text file's content (decompressed) is cut after ``SAMPLE_BYTES`` and its last record, which the
    cut may have broken, left out; a Parquet file gives its first ``SAMPLE_ROWS`` rows."""
    design = [c.name for c in table.columns]
    sink = io.BytesIO()
    cut = False
    if source.format == "parquet":
        opened = lambda: lake.landing.open_read(path)  # noqa: E731
        staged = stage_file(
            opened, path, source.csv.options(), design, sink, "parquet", sample_rows=SAMPLE_ROWS
        )
    else:
        content, cut = _content_head(lake, path, sniffed.compression)
        staged = stage_file(
            lambda: io.BytesIO(content), path, source.csv.options(), design, sink, source.format
        )
    staged_bytes = sink.getvalue()
    records = pq.read_table(io.BytesIO(staged_bytes)) if staged_bytes else staged_schema([]).empty_table()
    if cut and records.num_rows:
        records = records.filter(pc.less(records[LINE], pc.max(records[LINE])))
    pq.write_table(records, into)
    return staged, records


def _content_head(lake: Lake, path: str, compression: str | None) -> tuple[bytes, bool]:
    """The first ``SAMPLE_BYTES`` of a file's content, decompressed, and whether it was cut there (or
    its stream broke before)."""
    chunks: list[bytes] = []
    size = 0
    with lake.landing.open_read(path) as raw:
        content = decompressed(raw, compression)
        try:
            while size <= SAMPLE_BYTES and (chunk := content.read(min(1 << 16, SAMPLE_BYTES + 1 - size))):
                chunks.append(chunk)
                size += len(chunk)
        except (OSError, EOFError, zlib.error, pa.ArrowInvalid):
            return b"".join(chunks), True
    head = b"".join(chunks)
    return head[:SAMPLE_BYTES], size > SAMPLE_BYTES


def _rejected_records(name: str, records: pa.Table, where: str, unit: str) -> list[Finding]:
    """Records of the sample the parser rejects, as the dump would: the load quarantines them."""
    rejected = records.filter(pc.is_valid(records[REASON]))
    if not rejected.num_rows:
        return []
    first = rejected.slice(0, 1).to_pylist()[0]
    at = f"{unit} {first[LINE]}: {first[REASON]}" if first[LINE] is not None else first[REASON]
    every = rejected.num_rows == records.num_rows
    message = (
        f"{rejected.num_rows} of the first {records.num_rows} record(s) of {where} cannot be read "
        f"(first at {at}); the load would quarantine {'every one' if every else 'them'}"
    )
    return [Finding("delivered_records", "error" if every else "warning", name, message)]


def check_delivered_types(
    spark: Any, name: str, table: Table, sample: Path, sampled: str, unit: str
) -> list[Finding]:
    """Each declared column of the sample's readable records cast as the load casts it
    (``TRY_CAST``); ``sampled`` says how many records of which file."""
    from pyspark.sql import functions as F

    from spark_jobs.loading import spark_type, try_cast

    frame = spark.read.parquet(str(sample)).where(F.col(REASON).isNull())
    typed = [
        (c.name, spark_type(c.type))
        for c in table.columns
        if c.name in frame.columns and spark_type(c.type) != "string"
    ]
    if not typed:
        return []
    aggregates = []
    for i, (column, target) in enumerate(typed):
        failed = F.col(column).isNotNull() & try_cast(column, target).isNull()
        aggregates += [
            F.count(column).alias(f"values{i}"),
            F.sum(failed.cast("long")).alias(f"failed{i}"),
            F.min(F.when(failed, F.struct(F.col(LINE), F.col(column)))).alias(f"first{i}"),
        ]
    counts = frame.agg(*aggregates).first()
    findings = []
    for i, (column, target) in enumerate(typed):
        values, failed, first = counts[f"values{i}"], counts[f"failed{i}"] or 0, counts[f"first{i}"]
        if not failed:
            continue
        value = first[1] if len(first[1]) <= EXAMPLE_CHARS else first[1][:EXAMPLE_CHARS] + "…"
        example = f"{unit} {first[0]}: {value!r}"
        if failed == values:
            message = (
                f"column {column!r} is declared {target}, but none of its {values} value(s) in the first "
                f"{sampled} is a valid {target} ({example}); the load would quarantine every row holding a "
                "value. Declare the type the delivery holds, or have upstream fix it"
            )
        else:
            message = (
                f"{failed} of the {values} value(s) of column {column!r} in the first {sampled} are not a "
                f"valid {target} (first at {example}); the load will quarantine those rows"
            )
        severity: Severity = "error" if failed == values else "warning"
        findings.append(Finding("delivered_types", severity, name, message, column=column))
    return findings


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
            findings += check_newest_delivery(lake, name, table, table.source, spark)
        findings += check_published_schema(lake, name, table)
    findings += check_sql(loaded, spark)
    return findings


def report(findings: list[Finding], loaded: LoadedConfig, *, with_spark: bool = True) -> str:
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    tables = len(loaded.config.tables)
    lines = [f.render() for f in sorted(findings, key=lambda f: (f.severity != "error", f.table))]
    lines.append(
        f"validated {tables} table(s) and {len(loaded.sql_files)} SQL file(s) of {loaded.provenance.uri}: "
        f"{errors} error(s), {warnings} warning(s)"
    )
    if not with_spark:
        lines.append("not checked (--no-spark): delivered values against declared types, SQL in Spark")
    return "\n".join(lines)


def local_spark(ansi: bool) -> Any:
    """A small in-process Spark session for planning SQL and casting a delivery's sample, with the SQL
    settings every job runs with (``[spark] ansi``, UTC), so it plans what the target will run."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[1]")
        .appName("dp-validate")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
    )
    for key, value in sql_conf(ansi).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
