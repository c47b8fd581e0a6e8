"""Load a table's staged deliveries for a range of days into typed, Hive-partitioned Parquet.

Shipped to wherever Spark runs (local spark-submit or a cluster), so it imports only pyspark and
dagster_pipes. Everything it needs arrives through Pipes extras: the days, the table's columns (the
design plus columns added by schema evolution), key, dedup and quarantine policy, zone locations
and the manifests' row counts. It reports the materialization and the checks back the same way.

Every staged row ends as exactly one of: loaded, quarantined (unparseable at dump, or a value that
does not fit its column's type — with the reason, file and line), or deduplicated. For each day,
rows in = loaded + quarantined + deduplicated, and the job checks it.

Publishing is per partition and crash-safe: rows are written to a staging folder, a journal names
the partitions to swap, then each partition is swapped in by two renames. A job killed at any point
leaves each partition old or new, never mixed; the next load rolls an unfinished journal forward.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import platform
import signal
import time
from typing import Any

from dagster_pipes import PipesContext
from pipes_bootstrap import open_pipes
from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

LINE, SOURCE, REASON, RAW = "_line", "_source_file", "_reject_reason", "_raw_text"
STATUS = "_status"
ROW_HASH, LOAD_DATE = "row_hash", "load_date"
_TYPE_ALIASES = {"long": "bigint", "integer": "int", "short": "smallint", "byte": "tinyint"}


def days_between(start: str, end: str) -> list[str]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def spark_type(declared: str) -> str:
    """The Spark simpleString of a declared type, so design and written schema compare equal."""
    t = declared.replace(" ", "").lower()
    return _TYPE_ALIASES.get(t, t)


class Phases:
    """Wall time per phase of the job, reported as metadata: the profile of every load."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 2)
        self._last = now


def fault_point(name: str) -> None:
    """Tests kill the job here (DP_FAULT_KILL_AT=name) to prove publishing is crash-safe."""
    if os.environ.get("DP_FAULT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Hdfs:
    """The Hadoop FileSystem calls the job needs, for any URI scheme Spark can write."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm = spark._jvm  # type: ignore[attr-defined]
        self._conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]

    def _fs(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self._conf), path

    def exists(self, uri: str) -> bool:
        fs, path = self._fs(uri)
        return bool(fs.exists(path))

    def delete(self, uri: str) -> None:
        fs, path = self._fs(uri)
        if fs.exists(path):
            fs.delete(path, True)

    def rename(self, src: str, dst: str) -> None:
        fs, source = self._fs(src)
        _, target = self._fs(dst)
        fs.mkdirs(target.getParent())
        if not fs.rename(source, target):
            raise OSError(f"could not rename {src} to {dst}")

    def size(self, uri: str) -> int:
        fs, path = self._fs(uri)
        return int(fs.getContentSummary(path).getLength()) if fs.exists(path) else 0

    def list_names(self, uri: str) -> list[str]:
        fs, path = self._fs(uri)
        return [s.getPath().getName() for s in fs.listStatus(path)] if fs.exists(path) else []

    def write_text(self, uri: str, text: str) -> None:
        fs, path = self._fs(uri)
        out = fs.create(path, True)
        out.write(bytearray(text.encode()))
        out.close()

    def read_text(self, uri: str) -> str:
        fs, path = self._fs(uri)
        stream = fs.open(path)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()


class Publisher:
    """Swaps freshly written partitions into a table folder, journaled so a crash can be finished."""

    def __init__(self, hdfs: Hdfs, root: str, partition_column: str) -> None:
        self.hdfs, self.root, self.pc = hdfs, root, partition_column

    def staging(self, run: str) -> str:
        return f"{self.root}/_staging/{run}"

    def publish(self, run: str, days: list[str]) -> None:
        """Swap in the run's partitions; a day with no staged rows ends up absent (empty)."""
        journal = f"{self.root}/_publish/{run}.json"
        actions = {
            d: "replace" if self.hdfs.exists(f"{self.staging(run)}/{self.pc}={d}") else "remove" for d in days
        }
        self.hdfs.write_text(journal, json.dumps({"run": run, "actions": actions}))
        fault_point("journal_written")
        self._apply(run, actions)
        self.hdfs.delete(journal)

    def recover(self) -> list[str]:
        """Finish every journal a killed job left behind; return the runs it completed. Safe because
        a job runs only while its orchestrator holds the table's lock in the lake (taken over only
        from a holder that provably died): whatever other runs left here, they are dead."""
        finished = []
        for name in sorted(self.hdfs.list_names(f"{self.root}/_publish")):
            journal = f"{self.root}/_publish/{name}"
            entry = json.loads(self.hdfs.read_text(journal))
            self._apply(entry["run"], entry["actions"])
            self.hdfs.delete(journal)
            finished.append(entry["run"])
        for leftover in self.hdfs.list_names(f"{self.root}/_staging"):  # written, never journaled
            self.hdfs.delete(f"{self.root}/_staging/{leftover}")
        return finished

    def _apply(self, run: str, actions: dict[str, str]) -> None:
        for i, (day, action) in enumerate(sorted(actions.items())):
            final = f"{self.root}/{self.pc}={day}"
            fresh = f"{self.staging(run)}/{self.pc}={day}"
            trash = f"{self.root}/_trash/{run}/{self.pc}={day}"
            if action == "replace" and not self.hdfs.exists(fresh):
                continue  # swapped before a crash
            if self.hdfs.exists(final):
                self.hdfs.rename(final, trash)
            if action == "replace":
                self.hdfs.rename(fresh, final)
            fault_point(f"swapped_{i + 1}")
        self.hdfs.delete(f"{self.root}/_trash/{run}")
        self.hdfs.delete(self.staging(run))


def read_staged(spark: SparkSession, spec: dict[str, Any], days: list[str]) -> DataFrame | None:
    pc = spec["partition_column"]
    paths = [f"{spec['staged_uri']}/{pc}={d}" for d in days if d in spec["staged_days"]]
    if not paths:
        return None
    return (
        spark.read.option("mergeSchema", "true")
        .option("basePath", spec["staged_uri"])
        .parquet(*paths)
        .withColumn(pc, F.col(pc).cast("date"))
    )


def try_cast(column: str | None, target: str) -> Column:
    """``column`` cast to ``target``, null where the value does not fit. SQL's TRY_CAST, because
    ``Column.try_cast`` is Spark 4 only; it behaves the same whatever ``spark.sql.ansi.enabled`` is."""
    if column is None:
        return F.lit(None).cast(target)
    return F.expr(f"TRY_CAST(`{column.replace('`', '``')}` AS {target})")


def classify(staged: DataFrame, spec: dict[str, Any]) -> DataFrame:
    """Typed columns, the raw strings, and each row's status: loaded / quarantined / deduplicated."""
    present = set(staged.columns)
    pc = spec["partition_column"]
    typed: list[Column] = []
    cast_reasons: list[Column] = []
    for col in spec["columns"]:
        name, target = col["name"], spark_type(col["type"])
        raw = F.col(name) if name in present else F.lit(None).cast("string")
        cast = raw if target == "string" else try_cast(name if name in present else None, target)
        typed.append(cast.alias(f"__typed_{name}"))
        cast_reasons.append(F.when(raw.isNotNull() & cast.isNull(), F.lit(f"{name}: not a valid {target}")))
    reason = F.coalesce(F.col(REASON), F.nullif(F.concat_ws("; ", *cast_reasons), F.lit("")))
    raw_cols = [
        F.col(c["name"]) if c["name"] in present else F.lit(None).cast("string").alias(c["name"])
        for c in spec["columns"]
    ]
    frame = staged.select(
        *raw_cols, *typed, F.col(pc), F.col(LINE), F.col(SOURCE), F.col(RAW), reason.alias(REASON)
    )
    status = F.when(F.col(REASON).isNotNull(), F.lit("quarantined")).otherwise(F.lit("loaded"))
    dedup = spec["dedup"]
    if dedup["enabled"] and spec["key"]:
        order = [F.col(f"__typed_{dedup['order_by']}").desc_nulls_last()] if dedup["order_by"] else []
        window = Window.partitionBy(pc, *[F.col(f"__typed_{k}") for k in spec["key"]]).orderBy(
            F.col(REASON).isNotNull(), *order, F.col(SOURCE).desc(), F.col(LINE).desc()
        )
        rank = F.row_number().over(window)
        status = (
            F.when(F.col(REASON).isNotNull(), F.lit("quarantined"))
            .when(rank > 1, F.lit("deduplicated"))
            .otherwise(F.lit("loaded"))
        )
    return frame.withColumn(STATUS, status)


def published_columns(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], spark_type(c["type"])) for c in spec["columns"]] + [
        (ROW_HASH, "string"),
        (LOAD_DATE, "date"),
        (spec["partition_column"], "date"),
    ]


def load(
    spark: SparkSession, spec: dict[str, Any], days: list[str], run: str, phases: Phases
) -> dict[str, Any]:
    pc = spec["partition_column"]
    hdfs = Hdfs(spark)
    table, quarantine = Publisher(hdfs, spec["table_uri"], pc), Publisher(hdfs, spec["quarantine_uri"], pc)
    recovered = table.recover() + quarantine.recover()
    phases.done("recover")
    counts = {s: {d: 0 for d in days} for s in ("quarantined", "deduplicated")}
    staged = read_staged(spark, spec, days)
    if staged is not None:
        # One pass reads, types, hashes and writes the loaded rows, observing how many rows take each
        # status on the way; the rare quarantined and deduplicated rows cost a pass only when present.
        # (Caching the typed frame for a separate count cost more than all of this on 6M rows.)
        frame = classify(staged, spec)
        observation = Observation("statuses")
        observed = frame.observe(
            observation, *[F.sum((F.col(STATUS) == s).cast("long")).alias(s) for s in (*counts, "loaded")]
        )
        names = [c["name"] for c in spec["columns"]]
        canonical = F.concat_ws(
            "\u001f", *[F.coalesce(F.col(f"__typed_{n}").cast("string"), F.lit("\u0000")) for n in names]
        )
        observed.where(F.col(STATUS) == "loaded").select(
            *[F.col(f"__typed_{n}").alias(n) for n in names],
            F.sha2(canonical, 256).alias(ROW_HASH),
            F.lit(spec["load_date"]).cast("date").alias(LOAD_DATE),
            pc,
        ).write.mode("overwrite").partitionBy(pc).parquet(table.staging(run))
        totals = {k: int(v or 0) for k, v in observation.get.items()}
        phases.done("read, type, hash and write loaded")
        fault_point("loaded_written")
        if totals["quarantined"]:
            frame.where(F.col(STATUS) == "quarantined").select(
                *names,
                F.col(REASON),
                F.col(SOURCE),
                F.col(LINE),
                F.coalesce(
                    F.col(RAW), F.concat_ws(",", *[F.coalesce(F.col(n), F.lit("")) for n in names])
                ).alias(RAW),
                pc,
            ).write.mode("overwrite").partitionBy(pc).parquet(quarantine.staging(run))
            for row in spark.read.parquet(quarantine.staging(run)).groupBy(pc).count().collect():
                counts["quarantined"][row[pc].isoformat()] = row["count"]
            phases.done("write quarantined")
        fault_point("quarantined_written")
        if totals["deduplicated"]:
            for row in frame.where(F.col(STATUS) == "deduplicated").groupBy(pc).count().collect():
                counts["deduplicated"][row[pc].isoformat()] = row["count"]
            phases.done("count deduplicated")
    fault_point("staging_written")
    table.publish(run, days)
    quarantine.publish(run, days)
    phases.done("publish")
    return {**counts, "recovered_runs": recovered}


def register(
    spark: SparkSession, spec: dict[str, Any], days: list[str], published_days: set[str]
) -> tuple[str | None, list[str]]:
    """Create or update the table in Spark's catalog (Derby locally, the cluster's metastore on EMR)
    and add or drop the run's partitions, so spark.table() and Hive/Athena need no repair step.
    Returns the table and which of the run's days the metastore now lists, read back from it."""
    name = spec.get("catalog_table")
    if not name or spark.conf.get("spark.sql.catalogImplementation", "in-memory") != "hive":
        return None, []
    pc = spec["partition_column"]
    database, table = name.split(".", 1)
    quoted = f"`{database}`.`{table}`"
    columns = published_columns(spec)
    if not spark.catalog.databaseExists(database):  # asking first: Hive logs an ERROR for IF NOT EXISTS
        spark.sql(f"CREATE DATABASE `{database}`")
    if not spark.catalog.tableExists(f"{database}.{table}"):
        ddl = ", ".join(f"`{n}` {t}" for n, t in columns)
        location = spec["table_uri"]
        spark.sql(
            f"CREATE TABLE {quoted} ({ddl}) USING parquet PARTITIONED BY (`{pc}`) LOCATION '{location}'"
        )
    known = {f.name for f in spark.table(quoted).schema.fields}
    new = [f"`{n}` {t}" for n, t in columns if n not in known]
    if new:  # schema evolution reaches the catalog too
        spark.sql(f"ALTER TABLE {quoted} ADD COLUMNS ({', '.join(new)})")
    added = [f"PARTITION (`{pc}` = '{d}')" for d in days if d in published_days]
    if added:
        spark.sql(f"ALTER TABLE {quoted} ADD IF NOT EXISTS {' '.join(added)}")
    for d in days:
        if d not in published_days:
            spark.sql(f"ALTER TABLE {quoted} DROP IF EXISTS PARTITION (`{pc}` = '{d}')")
    listed = {row[0].split("=", 1)[1] for row in spark.sql(f"SHOW PARTITIONS {quoted}").collect()}
    return name, [d for d in days if d in listed]


_ORDERED_TYPES = ("tinyint", "smallint", "int", "bigint", "float", "double", "date", "timestamp")


def _plain(value: Any) -> Any:
    """A statistic as JSON: numbers stay numbers (NaN and infinities become null), dates and
    timestamps ISO text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):  # pyspark hands back local wall time; state it in UTC
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def partition_stats(written: DataFrame, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per partition, in one aggregation: row count, null count of every column, and min/max of the
    numeric, date and timestamp columns (the profile the UI plots across partitions)."""
    pc = spec["partition_column"]
    profiled = [f for f in written.schema.fields if f.name not in (pc, ROW_HASH, LOAD_DATE)]
    ordered = [
        f.name
        for f in profiled
        if f.dataType.simpleString() in _ORDERED_TYPES or f.dataType.simpleString().startswith("decimal")
    ]
    aggs = [F.count(F.lit(1)).alias("__rows")]
    for i, f in enumerate(profiled):
        aggs.append(F.sum(F.col(f.name).isNull().cast("long")).alias(f"__nulls_{i}"))
        if f.name in ordered:
            aggs += [F.min(f.name).alias(f"__min_{i}"), F.max(f.name).alias(f"__max_{i}")]
    stats = {}
    for row in written.groupBy(pc).agg(*aggs).collect():
        stats[row[pc].isoformat()] = {
            "rows": int(row["__rows"]),
            "nulls": {f.name: int(row[f"__nulls_{i}"] or 0) for i, f in enumerate(profiled)},
            "min": {f.name: _plain(row[f"__min_{i}"]) for i, f in enumerate(profiled) if f.name in ordered},
            "max": {f.name: _plain(row[f"__max_{i}"]) for i, f in enumerate(profiled) if f.name in ordered},
        }
    return stats


def check_published(spark: SparkSession, spec: dict[str, Any], days: list[str]) -> dict[str, Any]:
    """Read back what is now published for the days: checks and partition statistics in two passes."""
    pc = spec["partition_column"]
    hdfs = Hdfs(spark)
    paths = [f"{spec['table_uri']}/{pc}={d}" for d in days if hdfs.exists(f"{spec['table_uri']}/{pc}={d}")]
    required = [c["name"] for c in spec["columns"] if not c["nullable"] or c["name"] in spec["key"]]
    if not paths:
        return {
            "paths": [],
            "schema": [],
            "stats": {},
            "nulls": {c: 0 for c in required},
            "dup_keys": 0,
            "dup_rows": 0,
            "bytes": 0,
        }
    written = spark.read.option("basePath", spec["table_uri"]).parquet(*paths)
    stats = partition_stats(written, spec)
    nulls = {c: sum(day["nulls"].get(c, 0) for day in stats.values()) for c in required}
    dup_keys = dup_rows = 0
    if spec["key"]:
        dups = written.groupBy(pc, *spec["key"]).count().where("count > 1")
        d = dups.agg(F.count(F.lit(1)).alias("keys"), F.sum("count").alias("rows")).first()
        dup_keys, dup_rows = int(d["keys"] or 0), int(d["rows"] or 0)
    return {
        "paths": paths,
        "schema": [(f.name, f.dataType.simpleString()) for f in written.schema.fields],
        "stats": stats,
        "nulls": nulls,
        "dup_keys": dup_keys,
        "dup_rows": dup_rows,
        "bytes": sum(hdfs.size(p) for p in paths),
    }


def _json(value: Any) -> dict[str, Any]:
    return {"raw_value": value, "type": "json"}


def _int(value: int) -> dict[str, Any]:
    return {"raw_value": int(value), "type": "int"}


def runtime_metadata(spark: SparkSession) -> dict[str, Any]:
    """The runtime the job really ran on, as the job sees it: proof of what the launcher pinned."""
    return _json(
        {
            "spark": spark.version,
            "python": platform.python_version(),
            "ansi": spark.conf.get("spark.sql.ansi.enabled"),
            "time_zone": spark.conf.get("spark.sql.session.timeZone"),
        }
    )


def use_s3_credentials(spark: SparkSession, spec: dict[str, Any]) -> list[str]:
    """Temporary keys from dp's role chain, set per bucket on S3A (which then also serves s3://), so
    the job reaches a lake in another account; the buckets it got keys for (never the keys)."""
    credentials: dict[str, dict[str, str]] = spec.get("s3_credentials") or {}
    if not credentials:
        return []
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    conf.set("fs.s3.impl", "org.apache.hadoop.fs.s3a.S3AFileSystem")
    for bucket, keys in credentials.items():
        per_bucket = f"fs.s3a.bucket.{bucket}."
        provider = "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
        conf.set(per_bucket + "aws.credentials.provider", provider)
        for name in ("access_key", "secret_key", "session_token"):
            conf.set(per_bucket + name.replace("_", "."), keys[name])
    return sorted(b for b in credentials if conf.get(f"fs.s3a.bucket.{b}.session.token"))


def report(
    pipes: PipesContext,
    spec: dict[str, Any],
    days: list[str],
    result: dict[str, Any],
    published: dict[str, Any],
    seconds: float,
) -> None:
    asset = spec["asset_key"]
    expected = published_columns(spec)
    rows_in = {d: int(spec["manifest_rows"][d]) for d in days}
    stats = published["stats"]
    loaded = {d: stats[d]["rows"] if d in stats else 0 for d in days}
    quarantined, deduplicated = result["quarantined"], result["deduplicated"]
    descriptions = {c["name"]: c.get("description") or None for c in spec["columns"]}
    total_in, total_q = sum(rows_in.values()), sum(quarantined.values())

    pipes.report_asset_materialization(
        asset_key=asset,
        metadata={
            "dagster/row_count": _int(sum(loaded.values())),
            "rows_in": _int(total_in),
            "rows_quarantined": _int(total_q),
            "rows_deduplicated": _int(sum(deduplicated.values())),
            "bytes": _int(published["bytes"]),
            "partitions": _int(len(days)),
            **(
                {"s3_credentials_for": _json(result["s3_credentials_for"])}
                if result["s3_credentials_for"]
                else {}
            ),
            "rows_by_partition": _json(loaded),
            "quarantined_by_partition": _json({d: n for d, n in quarantined.items() if n}),
            "partition_stats": _json(
                {
                    d: {
                        "rows_in": rows_in[d],
                        "rows_quarantined": quarantined[d],
                        "rows_deduplicated": deduplicated[d],
                        **stats.get(d, {"rows": 0, "nulls": {}, "min": {}, "max": {}}),
                    }
                    for d in days
                }
            ),
            "recovered_publishes": _json(result["recovered_runs"]),
            "dagster/column_schema": {
                "raw_value": {
                    "columns": [
                        {"name": n, "type": t, "description": descriptions.get(n)}
                        for n, t in published["schema"] or expected
                    ]
                },
                "type": "table_schema",
            },
            "table_uri": {"raw_value": spec["table_uri"], "type": "path"},
            "catalog_table": {
                "raw_value": result.get("catalog_table"),
                "type": "text" if result.get("catalog_table") else "null",
            },
            "catalog_partitions": _json(result["catalog_partitions"]),
            "spark_seconds": {"raw_value": round(seconds, 2), "type": "float"},
            "spark_phase_seconds": _json(result["phases"]),
            "spark_runtime": result["runtime"],
        },
    )
    pipes.report_asset_check(
        "schema_matches_design",
        passed=not published["paths"] or published["schema"] == expected,
        asset_key=asset,
        metadata={
            "expected": _json([f"{n} {t}" for n, t in expected]),
            "published": _json([f"{n} {t}" for n, t in published["schema"]]),
        },
    )
    bad_nulls = sorted(c for c, n in published["nulls"].items() if n)
    pipes.report_asset_check(
        "required_columns_not_null",
        passed=not bad_nulls,
        asset_key=asset,
        metadata={"null_counts": _json(published["nulls"]), "columns_with_nulls": _json(bad_nulls)},
    )
    pipes.report_asset_check(
        "key_unique",
        passed=published["dup_keys"] == 0,
        asset_key=asset,
        metadata={
            "key": _json(spec["key"]),
            "duplicate_keys": _int(published["dup_keys"]),
            "rows_with_duplicate_keys": _int(published["dup_rows"]),
        },
    )
    mismatched = {
        d: {
            "in": rows_in[d],
            "loaded": loaded[d],
            "quarantined": quarantined[d],
            "deduplicated": deduplicated[d],
        }
        for d in days
        if rows_in[d] != loaded[d] + quarantined[d] + deduplicated[d]
    }
    pipes.report_asset_check(
        "row_accounting",
        passed=not mismatched,
        asset_key=asset,
        metadata={
            "rows_in": _int(total_in),
            "rows_loaded": _int(sum(loaded.values())),
            "rows_quarantined": _int(total_q),
            "rows_deduplicated": _int(sum(deduplicated.values())),
            "mismatched_partitions": _json(mismatched),
        },
    )
    policy = spec["quarantine"]
    ratio = total_q / total_in if total_in else 0.0
    within = ratio <= policy["max_ratio"] and (policy["max_rows"] is None or total_q <= policy["max_rows"])
    pipes.report_asset_check(
        "quarantine_within_threshold",
        passed=within,
        asset_key=asset,
        metadata={
            "rows_quarantined": _int(total_q),
            "ratio": {"raw_value": round(ratio, 6), "type": "float"},
            "max_ratio": {"raw_value": policy["max_ratio"], "type": "float"},
            "max_rows": _json(policy["max_rows"]),
            "quarantine_uri": {"raw_value": spec["quarantine_uri"], "type": "path"},
        },
    )


def main() -> None:
    with open_pipes() as pipes:
        spec = pipes.extras
        key_range = spec["partition_key_range"]  # sent by dp's launchers for single days and ranges alike
        days = days_between(key_range["start"], key_range["end"])
        started = time.monotonic()
        phases = Phases()
        spark = (
            SparkSession.builder.appName(f"dp-load-{spec['table']}")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .getOrCreate()
        )
        pipes.log.info(f"loading {spec['table']} for {len(days)} day(s): {days[0]} .. {days[-1]}")
        credentialed = use_s3_credentials(spark, spec)
        phases.done("start Spark")
        result = load(spark, spec, days, run=pipes.run_id or f"adhoc-{int(time.time())}", phases=phases)
        published = check_published(spark, spec, days)
        phases.done("checks (read back)")
        result["catalog_table"], result["catalog_partitions"] = register(
            spark, spec, days, set(published["stats"])
        )
        phases.done("catalog")
        result["phases"] = phases.seconds
        result["s3_credentials_for"] = credentialed
        result["runtime"] = runtime_metadata(spark)
        report(pipes, spec, days, result, published, time.monotonic() - started)
        spark.stop()


if __name__ == "__main__":
    main()
