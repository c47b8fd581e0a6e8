"""The one contract between the orchestrator (``dp_assets``) and the Spark job (``spark_jobs``).

What a run asks the job for, the staged columns the dump writes and the job reads, the check names
and the metadata keys the job reports. Standard library only: it ships to clusters inside
``spark_jobs.zip``, and ``dp_assets`` imports this same module, so a rename fails a unit test on
the laptop instead of a Spark run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypedDict

# The entry point spark-submit runs: one application per Dagster run, whatever it covers.
RUN_SCRIPT = "run_pipeline.py"


def days_between(start: str, end: str) -> list[str]:
    """A run's partition keys, ``start`` to ``end`` inclusive (ISO dates)."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


# In the Pipes context params of an application started before its run exists (the local launcher's
# ``warm_start``), the pid of the process that started it: its context and message files appear once
# that process's run step takes it over.
AWAIT_RUN_KEY = "dp_await_run"

# The JVM option of a run with the JIT's quick compiler only (C1), which a short run repays and a
# long one does not: the local launcher gives it to small runs, and the job reports whether it had it.
QUICK_JIT = "-XX:TieredStopAtLevel=1"

# Columns of the staged zone beside the delivered ones (written by the dump, read by the load).
LINE, SOURCE, REASON, RAW = "_line", "_source_file", "_reject_reason", "_raw_text"
# Their types (Spark SQL names); every delivered column is staged as a string.
STAGED_META = {LINE: "bigint", SOURCE: "string", REASON: "string", RAW: "string"}


@dataclass(frozen=True)
class CsvOptions:
    """How the dump reads a delivered text file (a table's ``source.csv``; an extract's are the
    defaults, PostgreSQL's COPY CSV). JSON Lines reads ``encoding`` only."""

    delimiter: str = ","
    header: bool = True
    null_value: str = ""
    encoding: str = "UTF-8"


# Columns the load adds to every published table.
ROW_HASH, LOAD_DATE = "row_hash", "load_date"

# The load's blocking checks, computed by the job: name -> what it guarantees.
LOAD_CHECKS = {
    "schema_matches_design": "Published columns and types are the design's plus evolved ones, in order.",
    "required_columns_not_null": "Key columns and columns declared nullable = false hold no nulls.",
    "key_unique": "No two published rows of a partition share the table's key.",
    "row_accounting": "For every day: rows in = rows loaded + rows quarantined + rows deduplicated.",
    "quarantine_within_threshold": "Quarantined rows stay within the table's max_ratio and max_rows.",
}

# Where a version the blocking checks kept from publishing is kept (<table>/_rejected/<run>/), and
# the record of why, which `dp publish` reads: {"run", "days", "counts", "failed_checks"}.
REJECTED, REJECTED_RECORD = "_rejected", "_dp_rejected.json"
# Each run's version of a table (<table>/_versions/<run>/<day column>=<day>/), and the object naming
# the published one of each day: {"partitions": {day: folder}, "superseded": {folder: epoch seconds}},
# folders relative to the table. Readers that go by the lake read it; the catalog points at the same.
VERSIONS, CURRENT = "_versions", "_dp_current.json"

# A derived table's blocking checks (key_unique only where [derived.<t>] declares a key).
DERIVED_CHECKS = {
    "schema_matches_sql": "Published columns are the SQL's output columns, the day column last.",
    "key_unique": "No two published rows of a partition share the declared key.",
    "row_accounting": "Rows the SQL produced = rows published + rows outside the run's days.",
}

# With [secondary], every loaded and derived table has this non-blocking check: whether the run also
# published it into the secondary environment. Failing there warns; the primary's outcome stands.
SECONDARY_CHECK = "published_to_secondary"

# Metadata the job reports that the orchestrator reads (the rest is shown as it comes).
PARTITION_STATS = "partition_stats"  # {day: {rows, nulls, min, max, [rows_in, ...]}}: moved onto partitions
ROW_COUNT = "dagster/row_count"
# What only the run's whole range has (its partitions, rows, bytes, seconds), as JSON: a number the
# run repeated on each partition would plot wrong across partitions.
RANGE_TOTALS = "range_totals"
COLUMN_SCHEMA = "dagster/column_schema"
SPARK_RUNTIME = "spark_runtime"
# A log line that starts with it is progress (a table's stage starting or ending): `dp run` prints
# it, and sends the rest of the event stream to a log file.
PROGRESS = "» "
# The custom message closing every run: which tables failed, and which were not run because of it.
OUTCOME_MESSAGE = "dp_outcome"
# The custom message of each dump as it finishes (a ``DumpDone``): the orchestrator reports
# ``raw/<t>`` from its manifests while the application goes on.
DUMPED_MESSAGE = "dp_dumped"
# A load's materialization: the schema evolution the job decided ({before, after, added, ignored}).
SCHEMA_EVOLUTION = "schema_evolution"
# The dump's blocking check: no sensitive data in columns not declared sensitive.
SENSITIVE_CHECK = "no_undeclared_sensitive_data"


class PartitionKeyRange(TypedDict):
    start: str
    end: str


class ColumnSpec(TypedDict):
    name: str
    type: str
    nullable: bool
    description: str | None


class DedupSpec(TypedDict):
    enabled: bool
    order_by: str | None


class QuarantineSpec(TypedDict):
    max_ratio: float
    max_rows: int | None


class LoadRequest(TypedDict):
    """One table to load, as the orchestrator asks: its staged days typed into ``table_uri``, rejects
    into ``quarantine_uri``. What the dump decides (the days' rows, the columns evolution adds) the
    job takes from the days' manifests: those its dump in the same application returned, else the
    ones under ``lake_uri``."""

    table: str
    asset_key: str
    partition_column: str
    design: list[ColumnSpec]  # the design's columns
    evolution: str  # add | ignore | fail: delivered columns the design lacks
    established: list[dict[str, Any]] | None  # the table's schema so far (_dp_schema.json's columns)
    key: list[str]
    dedup: DedupSpec
    quarantine: QuarantineSpec
    lake_uri: str  # the dump's zones (manifests) are under it
    staged_uri: str
    table_uri: str
    quarantine_uri: str
    load_date: str
    catalog_table: str | None  # "<database>.<table>", None when there is no catalog
    publish_rejected: str | None  # a run id: publish the version its checks held back (`dp publish`)


class LoadSpec(LoadRequest):
    """A load as the job runs it, completed from the manifests (``spark_jobs.evolution``)."""

    columns: list[ColumnSpec]  # the design's, then columns added by schema evolution
    staged_days: list[str]  # days whose delivery staged any rows
    manifest_rows: dict[str, int]  # rows the dump staged, per day: the accounting's "rows in"


class UpstreamSpec(TypedDict):
    uri: str
    partition_column: str


class DeriveSpec(TypedDict):
    """One derived table: its SQL over the run's days of its upstream tables, into ``table_uri``."""

    table: str
    asset_key: str
    file: str
    sql: str
    partition_column: str
    upstream: dict[str, UpstreamSpec]  # table name -> where it is published
    table_uri: str
    columns: list[str]  # the SQL's output columns, as parsed from it
    key: list[str]  # declared unique per partition; empty: none declared
    catalog_table: str | None
    publish_rejected: str | None  # a run id: publish the version its checks held back (`dp publish`)


class SecondarySpec(TypedDict):
    """The same tables again, published into the secondary environment's lake and catalog: the same
    staged rows and columns, other ``table_uri``, ``quarantine_uri``, ``catalog_table`` and upstream."""

    name: str
    loads: list[LoadRequest]
    derives: list[DeriveSpec]


class IdentifierSpec(TypedDict):
    """A sensitive-data identifier; a managed one (by name) brings its own candidate check."""

    name: str
    pattern: str  # RE2 and Python re alike
    severity: str  # high | medium | low
    keywords: list[str]  # a custom identifier counts only in columns whose name holds one


class ScanSpec(TypedDict):
    """What the dump's scan looks for in a table's staged files, and what it does about it."""

    identifiers: list[IdentifierSpec]
    declared: list[str]  # columns declared sensitive: findings are reported, nothing is done
    typed: list[str]  # design columns of a non-string type: nulled rather than hashed or masked
    action: str  # isolate | mask | hash
    sample_rows: int | None
    hash_key: str | None  # hex, for action hash: a secret, never logged or shown


class DeliveredFile(TypedDict):
    path: str  # relative to the landing root
    size: int


class DumpSpec(TypedDict):
    """One table's days to dump: where its deliveries and zones are, what was listed (or extracted),
    how its files parse, and its scan."""

    table: str
    partition_column: str
    source_prefix: str  # under landing_uri: <prefix>/<YYYY-MM-DD>/
    landing_uri: str
    lake_uri: str
    days: list[str]
    delivered: dict[str, list[DeliveredFile]]  # day -> the files listed (a file source)
    extracted: dict[str, list[dict[str, Any]]] | None  # day -> manifest entries (a database extract)
    file_format: str  # csv | jsonl | parquet
    csv: dict[str, Any]  # CsvOptions' fields
    columns: list[str]  # the design's
    scan: ScanSpec | None


class RunSpec(TypedDict):
    """A run's Pipes extras: every table it covers, loads first, derived tables in dependency order."""

    partition_key_range: PartitionKeyRange
    dumps: list[DumpSpec]  # dumped first: each table's load waits for its dump
    loads: list[LoadRequest]
    derives: list[DeriveSpec]
    secondary: SecondarySpec | None  # published after the primary, when [secondary] is configured
    s3_credentials: dict[str, dict[str, str]]  # bucket -> temporary keys: never logged or shown
    keep_superseded_seconds: float  # how long a replaced version stays readable ([processing])


class RunOutcome(TypedDict):
    """The job's last custom message: tables (asset keys) that failed and why, and those it did not
    run because a table they read failed in this run."""

    failed: dict[str, str]
    not_run: dict[str, str]


class DumpDone(TypedDict):
    """A dump that finished: its manifests are written (``DUMPED_MESSAGE``)."""

    table: str
    seconds: float
