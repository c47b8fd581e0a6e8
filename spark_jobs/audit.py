"""Write, audit, publish, shared by loads and derived tables: a version is written where nobody
reads it (the run's version folder), its blocking checks run on it, and only a version whose checks all
pass is published: the lake and the catalog point its days at it (``lake_io.Publisher``). A version
that fails is kept under ``_rejected/<run>/`` and nothing of it becomes visible, unless a reviewed
override publishes it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from dagster_pipes import PipesContext
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StructField, StructType

from spark_jobs.common import as_int, as_json, partition_stats
from spark_jobs.lake_io import CatalogSwitch, Hdfs, Publisher, fault_point


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    metadata: dict[str, Any]


@dataclass(frozen=True)
class TableOutcome:
    failed_checks: list[str]
    held_back: str | None  # where the rejected version is kept, when its checks kept it from publishing


def audit(
    spark: SparkSession, root: str, days: list[str], pc: str, key: list[str], required: list[str]
) -> dict[str, Any]:
    """What the checks need of a version not yet visible (the run's own, or a rejected version),
    read in two passes: partition statistics and null counts, then duplicate keys. Its schema comes
    from a file's footer, which Spark would read in a job of its own."""
    hdfs = Hdfs(spark)
    paths = [f"{root}/{pc}={d}" for d in days if hdfs.exists(f"{root}/{pc}={d}")]
    if not paths:
        return {
            "paths": [],
            "schema": [],
            "stats": {},
            "nulls": dict.fromkeys(required, 0),
            "dup_keys": 0,
            "dup_rows": 0,
            "bytes": 0,
        }
    written = spark.read.option("basePath", root)
    stored = hdfs.spark_schema(paths[0])
    if stored:  # the version's own schema, with its days' partition column as Spark infers it
        fields = [f for f in StructType.fromJson(json.loads(stored)).fields if f.name != pc]
        written = written.schema(StructType([*fields, StructField(pc, DateType())]))
    written = written.parquet(*paths)
    stats = partition_stats(written, pc)
    for day, day_stats in stats.items():
        day_stats["bytes"] = hdfs.size(f"{root}/{pc}={day}")
    nulls = {c: sum(day["nulls"].get(c, 0) for day in stats.values()) for c in required}
    dup_keys = dup_rows = 0
    if key:
        dups = written.groupBy(pc, *key).count().where("count > 1")
        d = dups.agg(F.count(F.lit(1)).alias("keys"), F.sum("count").alias("rows")).first()
        dup_keys, dup_rows = int(d["keys"] or 0), int(d["rows"] or 0)
    return {
        "paths": paths,
        "schema": [(f.name, f.dataType.simpleString()) for f in written.schema.fields],
        "stats": stats,
        "nulls": nulls,
        "dup_keys": dup_keys,
        "dup_rows": dup_rows,
        "bytes": sum(day["bytes"] for day in stats.values()),
    }


def key_unique(key: list[str], audited: dict[str, Any]) -> Check:
    return Check(
        "key_unique",
        audited["dup_keys"] == 0,
        {
            "key": as_json(key),
            "duplicate_keys": as_int(audited["dup_keys"]),
            "rows_with_duplicate_keys": as_int(audited["dup_rows"]),
        },
    )


def rejected_version(publisher: Publisher, table: str, override: str, days: list[str]) -> dict[str, Any]:
    """The record of the version run ``override`` held back for exactly these days, to publish it."""
    record = publisher.rejected_record(override)
    if record is None or record["days"] != days:
        raise RuntimeError(
            f"table {table!r}: no rejected version of run {override} for {days[0]}..{days[-1]} at "
            f"{publisher.rejected(override)} (found: {record['days'] if record else 'none'}); "
            "`dp publish` takes the run id and table a failed check names"
        )
    return record


def hold_back(
    pipes: PipesContext,
    asset_key: str,
    table: str,
    checks: list[Check],
    publishers: list[Publisher],
    record: dict[str, Any],
) -> TableOutcome:
    """Keep the run's version of every zone under ``_rejected/<run>/`` instead of publishing it, and
    report the checks with where it is and which partitions were held back."""
    run, days = record["run"], record["days"]
    uris = [p.reject(run, record) for p in publishers]
    held_back = uris[0]  # the table's own (publishers[0]); its quarantine's is beside it
    where = {"held_back_partitions": as_json(days), "rejected_uri": {"raw_value": held_back, "type": "path"}}
    for c in checks:
        pipes.report_asset_check(
            c.name, passed=c.passed, asset_key=asset_key, metadata={**c.metadata, **where}
        )
    failed = [c.name for c in checks if not c.passed]
    pipes.log.error(
        f"{table}: held back {days[0]}..{days[-1]}: blocking check(s) {', '.join(failed)} failed on the "
        f"version about to be published; it is kept at {held_back}"
    )
    return TableOutcome(failed, held_back)


def report_checks(pipes: PipesContext, asset_key: str, checks: list[Check], override: str | None) -> None:
    """The checks of a published version; failed ones only when an override published it after
    review, so they are warnings that say so."""
    for c in checks:
        extra = {} if c.passed else {"published_by_override_of_run": {"raw_value": override, "type": "text"}}
        pipes.report_asset_check(
            c.name,
            passed=c.passed,
            severity="ERROR" if c.passed else "WARN",
            asset_key=asset_key,
            metadata={**c.metadata, **extra},
        )


_CREATING_DATABASES = threading.Lock()


def uses_metastore(spark: SparkSession) -> bool:
    return spark.conf.get("spark.sql.catalogImplementation", "in-memory") == "hive"


def warm_catalog(spark: SparkSession, catalog_tables: list[str | None]) -> None:
    """Connect to the metastore (Derby's start-up takes seconds) while the tables compute, on a
    thread of its own, so publishing them later does not wait for it."""
    databases = sorted({t.split(".", 1)[0] for t in catalog_tables if t})
    if databases and uses_metastore(spark):
        threading.Thread(
            target=lambda: [spark.catalog.databaseExists(d) for d in databases],
            name="dp-catalog",
            daemon=True,
        ).start()


def catalog_switch(
    spark: SparkSession, name: str | None, root: str, pc: str, written: list[tuple[str, str]] | None = None
) -> CatalogSwitch | None:
    """How publishing points table ``name`` ("<database>.<table>") of Spark's catalog (Derby locally,
    the cluster's metastore on EMR, e.g. Glue) at the published versions: the partitions it lists are
    switched to their new locations by one call of the metastore client (one transaction in a Hive
    metastore; Glue's client updates them one by one), and the new ones added by another, so
    spark.table() and Hive/Athena see each partition old or new, never mixed, and need no repair
    step. A crash midway leaves the publish journal, which the next run finishes first. The table is
    created, and its new columns added, from the version published: its ``written`` schema as the
    audit read it, else (finishing a killed run's publish) a published partition's. None when the
    run has no catalog."""
    if not name or not uses_metastore(spark):
        return None
    database, table = name.split(".", 1)
    quoted = f"`{database}`.`{table}`"

    def spec(day: str) -> str:
        return f"PARTITION (`{pc}` = '{day}')"

    def switch(locations: dict[str, str | None]) -> None:
        published = {d: loc for d, loc in sorted(locations.items()) if loc}
        if published:
            _create_or_evolve(spark, database, table, root, pc, next(iter(published.values())), written)
        elif not spark.catalog.tableExists(f"{database}.{table}"):
            return
        listed = _partitions(spark, quoted, pc)
        new = [f"{spec(d)} LOCATION '{loc}'" for d, loc in published.items() if d not in listed]
        if new:
            spark.sql(f"ALTER TABLE {quoted} ADD IF NOT EXISTS {' '.join(new)}")
        moved = {d: loc for d, loc in published.items() if d in listed}
        if moved:
            _relocate(spark, quoted, [listed[d] for d in moved], list(moved.values()))
            fault_point("catalog_switched")
        gone = [spec(d) for d, loc in locations.items() if loc is None and d in listed]
        if gone:
            spark.sql(f"ALTER TABLE {quoted} DROP IF EXISTS {', '.join(gone)}")

    return switch


def _create_or_evolve(
    spark: SparkSession,
    database: str,
    table: str,
    root: str,
    pc: str,
    sample: str,
    written: list[tuple[str, str]] | None,
) -> None:
    """Create the table from the version's columns (``written``, else a published partition's, which
    costs a Spark job to read), or add the columns it lacks (schema evolution reaches the catalog
    too)."""
    quoted = f"`{database}`.`{table}`"
    if not written:
        written = [(f.name, f.dataType.simpleString()) for f in spark.read.parquet(sample).schema.fields]
    columns = [(n, t) for n, t in written if n != pc] + [(pc, "date")]
    with _CREATING_DATABASES:  # tables publish side by side: one creates the database
        if not spark.catalog.databaseExists(database):  # asking first: Hive logs an ERROR for IF NOT EXISTS
            spark.sql(f"CREATE DATABASE `{database}`")
    if not spark.catalog.tableExists(f"{database}.{table}"):
        ddl = ", ".join(f"`{n}` {t}" for n, t in columns)
        spark.sql(f"CREATE TABLE {quoted} ({ddl}) USING parquet PARTITIONED BY (`{pc}`) LOCATION '{root}'")
        return
    known = {f.name for f in spark.table(quoted).schema.fields}
    new = [f"`{n}` {t}" for n, t in columns if n not in known]
    if new:
        spark.sql(f"ALTER TABLE {quoted} ADD COLUMNS ({', '.join(new)})")


def _partitions(spark: SparkSession, quoted: str, pc: str) -> dict[str, Any]:
    """The table's partitions as the metastore lists them (one call), by day: JVM objects
    (``CatalogTablePartition``) for ``_relocate``."""
    state = spark._jsparkSession.sessionState()  # type: ignore[attr-defined]
    listing = state.catalog().listPartitions(
        state.sqlParser().parseTableIdentifier(quoted),
        spark._jvm.scala.Option.empty(),  # type: ignore[attr-defined]
    )
    partitions, each = {}, listing.iterator()
    while each.hasNext():
        partition = each.next()
        partitions[partition.spec().apply(pc)] = partition
    return partitions


def _relocate(spark: SparkSession, quoted: str, partitions: list[Any], locations: list[str]) -> None:
    """Point listed partitions at new locations in one call of the metastore client
    (``alterPartitions``): what ``ALTER TABLE … SET LOCATION`` does, one partition and five metastore
    calls at a time, for all of them at once."""
    jvm = spark._jvm  # type: ignore[attr-defined]
    state = spark._jsparkSession.sessionState()  # type: ignore[attr-defined]
    moved = jvm.java.util.ArrayList()
    # Resolved once, not per partition (see Hdfs: py4j searches every jar for each package on the way).
    to_uri, some = jvm.org.apache.spark.sql.catalyst.catalog.CatalogUtils.stringToURI, jvm.scala.Some
    for partition, location in zip(partitions, locations, strict=True):
        storage = _with_field(partition.storage(), 1, some(to_uri(location)))  # locationUri
        moved.add(_with_field(partition, 2, storage))  # storage
    state.catalog().alterPartitions(
        state.sqlParser().parseTableIdentifier(quoted),
        jvm.scala.collection.JavaConverters.asScalaBuffer(moved).toList(),
    )
    spark.catalog.refreshTable(quoted)


def _with_field(case: Any, position: int, value: Any) -> Any:
    """A copy of a Scala case class instance (a JVM object) with the field at ``position`` (from 1)
    replaced: its ``copy`` with every other field's default, which is the field itself, so it holds
    whatever fields this Spark's version gives the class (4.3's storage format has one 3.5's lacks)."""
    fields = [getattr(case, f"copy$default${i}")() for i in range(1, case.productArity() + 1)]
    fields[position - 1] = value
    return case.copy(*fields)


def catalog_partitions(spark: SparkSession, name: str | None, pc: str, days: list[str]) -> list[str]:
    """Which of ``days`` the catalog lists for table ``name``, read back from the metastore."""
    if not name or not uses_metastore(spark) or not spark.catalog.tableExists(name):
        return []
    listed = _partitions(spark, ".".join(f"`{p}`" for p in name.split(".", 1)), pc)
    return [d for d in days if d in listed]
