"""Load a table's raw CSV deliveries for a range of days into typed, Hive-partitioned Parquet.

Shipped to wherever Spark runs (local spark-submit or a cluster), so it imports only pyspark and
dagster_pipes. Everything it needs arrives through Pipes: the days as the partition key range, the
table design and zone locations as extras. It reports the materialization and the table's check
results back through the same channel.

Rows whose values do not survive the cast to the declared type are quarantined with the reason, so
that for every day: rows in the raw manifest = rows loaded + rows quarantined.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from dagster_pipes import PipesContext, open_dagster_pipes
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

REASON = "_reject_reason"
SOURCE_FILE = "_source_file"
_TYPE_ALIASES = {"long": "bigint", "integer": "int", "short": "smallint", "byte": "tinyint"}


def days_between(start: str, end: str) -> list[str]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def spark_type(declared: str) -> str:
    """The Spark simpleString of a declared type, so design and written schema compare equal."""
    t = declared.replace(" ", "").lower()
    return _TYPE_ALIASES.get(t, t)


class Hdfs:
    """The few Hadoop FileSystem calls the job needs, for any URI scheme Spark can write."""

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

    def size(self, uri: str) -> int:
        fs, path = self._fs(uri)
        return int(fs.getContentSummary(path).getLength()) if fs.exists(path) else 0


def read_raw(spark: SparkSession, spec: dict[str, Any], days: list[str]) -> DataFrame:
    """All of the range's raw files in one read; every column a string, the day from the path."""
    design, fmt = spec["design"], spec["design"]["csv"]
    pc = design["partition_column"]
    paths = [f"{spec['raw_uri']}/{pc}={d}" for d in days]
    df = (
        spark.read.option("header", fmt["header"])
        .option("sep", fmt["delimiter"])
        .option("nullValue", fmt["null_value"])
        .option("encoding", fmt["encoding"])
        .option("mode", "PERMISSIVE")
        .option("basePath", spec["raw_uri"])
        .csv(paths)
    )
    return df.toDF(*[c.strip().lower() for c in df.columns]).withColumn(
        SOURCE_FILE, F.col("_metadata.file_path")
    )


def type_rows(raw: DataFrame, design: dict[str, Any]) -> DataFrame:
    """Raw string columns, their typed twins (``__typed_<name>``), and the reason a row is rejected."""
    present = set(raw.columns)
    typed: list[Column] = []
    reasons: list[Column] = []
    for col in design["columns"]:
        name, target = col["name"], spark_type(col["type"])
        value = F.col(name) if name in present else F.lit(None).cast("string")
        cast = value.try_cast(target)
        typed.append(cast.alias(f"__typed_{name}"))
        reasons.append(F.when(value.isNotNull() & cast.isNull(), F.lit(f"{name}: not a valid {target}")))
    pc = design["partition_column"]
    raw_cols = [F.col(c) for c in raw.columns if c not in (pc, SOURCE_FILE)]
    return raw.select(
        *raw_cols,
        *typed,
        F.col(pc).cast("date").alias(pc),
        F.col(SOURCE_FILE),
        F.concat_ws("; ", *reasons).alias(REASON),
    )


def load(spark: SparkSession, spec: dict[str, Any], days: list[str]) -> dict[str, Any]:
    """Write loaded and quarantined rows for the days; overwrite only those days' partitions."""
    design = spec["design"]
    pc = design["partition_column"]
    hdfs = Hdfs(spark)
    frame = type_rows(read_raw(spark, spec, days), design).persist()
    counts = frame.groupBy(pc, (F.col(REASON) == "").alias("ok")).count().collect()
    loaded = {d: 0 for d in days}
    quarantined = {d: 0 for d in days}
    for row in counts:
        (loaded if row["ok"] else quarantined)[row[pc].isoformat()] += row["count"]

    good = frame.where(F.col(REASON) == "").select(
        *[F.col(f"__typed_{c['name']}").alias(c["name"]) for c in design["columns"]], pc
    )
    bad = frame.where(F.col(REASON) != "").select(*[c for c in frame.columns if not c.startswith("__typed_")])
    for df, uri, by_day in ((good, spec["table_uri"], loaded), (bad, spec["quarantine_uri"], quarantined)):
        for d in days:  # dynamic overwrite only replaces partitions that receive rows
            if by_day[d] == 0:
                hdfs.delete(f"{uri}/{pc}={d}")
        if any(by_day.values()):
            df.write.mode("overwrite").partitionBy(pc).parquet(uri)
    frame.unpersist()
    return {"loaded": loaded, "quarantined": quarantined}


def check_written(spark: SparkSession, spec: dict[str, Any], days: list[str]) -> dict[str, Any]:
    """Read back what was published for the days and compute every check in few passes."""
    design = spec["design"]
    pc = design["partition_column"]
    hdfs = Hdfs(spark)
    paths = [f"{spec['table_uri']}/{pc}={d}" for d in days if hdfs.exists(f"{spec['table_uri']}/{pc}={d}")]
    expected_schema = [(c["name"], spark_type(c["type"])) for c in design["columns"]] + [(pc, "date")]
    if not paths:
        return {
            "paths": [],
            "schema": expected_schema,
            "rows_by_day": {},
            "nulls": {},
            "dup_keys": 0,
            "dup_rows": 0,
            "bytes": 0,
        }
    written = spark.read.option("basePath", spec["table_uri"]).parquet(*paths)
    required = [c["name"] for c in design["columns"] if not c["nullable"] or c["name"] in design["key"]]
    agg = (
        written.agg(*[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in required]).first()
        if required
        else None
    )
    nulls = {c: int(agg[c] or 0) for c in required} if agg else {}
    rows_by_day = {r[pc].isoformat(): r["count"] for r in written.groupBy(pc).count().collect()}
    dup_keys = dup_rows = 0
    if design["key"]:
        dups = written.groupBy(*design["key"]).count().where("count > 1")
        d = dups.agg(F.count(F.lit(1)).alias("keys"), F.sum("count").alias("rows")).first()
        dup_keys, dup_rows = int(d["keys"] or 0), int(d["rows"] or 0)
    return {
        "paths": paths,
        "schema": [(f.name, f.dataType.simpleString()) for f in written.schema.fields],
        "rows_by_day": rows_by_day,
        "nulls": nulls,
        "dup_keys": dup_keys,
        "dup_rows": dup_rows,
        "bytes": sum(hdfs.size(p) for p in paths),
    }


def report(
    pipes: PipesContext,
    spec: dict[str, Any],
    days: list[str],
    result: dict[str, Any],
    written: dict[str, Any],
    seconds: float,
) -> None:
    design, asset = spec["design"], spec["asset_key"]
    pc = design["partition_column"]
    expected = [(c["name"], spark_type(c["type"])) for c in design["columns"]] + [(pc, "date")]
    manifest_rows = {d: int(spec["manifest_rows"][d]) for d in days}
    loaded = {d: written["rows_by_day"].get(d, 0) for d in days}
    quarantined = result["quarantined"]
    descriptions = {c["name"]: c.get("description") or None for c in design["columns"]}

    pipes.report_asset_materialization(
        asset_key=asset,
        metadata={
            "dagster/row_count": {"raw_value": sum(loaded.values()), "type": "int"},
            "rows_quarantined": {"raw_value": sum(quarantined.values()), "type": "int"},
            "rows_in": {"raw_value": sum(manifest_rows.values()), "type": "int"},
            "bytes": {"raw_value": written["bytes"], "type": "int"},
            "partitions": {"raw_value": len(days), "type": "int"},
            "rows_by_partition": {"raw_value": loaded, "type": "json"},
            "dagster/column_schema": {
                "raw_value": {
                    "columns": [
                        {"name": n, "type": t, "description": descriptions.get(n)}
                        for n, t in written["schema"] or expected
                    ]
                },
                "type": "table_schema",
            },
            "table_uri": {"raw_value": spec["table_uri"], "type": "path"},
            "spark_seconds": {"raw_value": round(seconds, 2), "type": "float"},
        },
    )
    schema_ok = not written["paths"] or written["schema"] == expected
    pipes.report_asset_check(
        "schema_matches_design",
        passed=schema_ok,
        asset_key=asset,
        metadata={
            "expected": {"raw_value": [f"{n} {t}" for n, t in expected], "type": "json"},
            "written": {"raw_value": [f"{n} {t}" for n, t in written["schema"]], "type": "json"},
        },
    )
    bad_nulls = {c: n for c, n in written["nulls"].items() if n}
    pipes.report_asset_check(
        "required_columns_not_null",
        passed=not bad_nulls,
        asset_key=asset,
        metadata={
            "null_counts": {"raw_value": written["nulls"], "type": "json"},
            "columns_with_nulls": {"raw_value": sorted(bad_nulls), "type": "json"},
        },
    )
    pipes.report_asset_check(
        "key_unique",
        passed=written["dup_keys"] == 0,
        asset_key=asset,
        metadata={
            "key": {"raw_value": design["key"], "type": "json"},
            "duplicate_keys": {"raw_value": written["dup_keys"], "type": "int"},
            "rows_with_duplicate_keys": {"raw_value": written["dup_rows"], "type": "int"},
        },
    )
    mismatched = {
        d: {"in": manifest_rows[d], "loaded": loaded[d], "quarantined": quarantined[d]}
        for d in days
        if manifest_rows[d] != loaded[d] + quarantined[d]
    }
    pipes.report_asset_check(
        "row_accounting",
        passed=not mismatched,
        asset_key=asset,
        metadata={
            "rows_in": {"raw_value": sum(manifest_rows.values()), "type": "int"},
            "rows_loaded": {"raw_value": sum(loaded.values()), "type": "int"},
            "rows_quarantined": {"raw_value": sum(quarantined.values()), "type": "int"},
            "mismatched_partitions": {"raw_value": mismatched, "type": "json"},
        },
    )


def main() -> None:
    with open_dagster_pipes() as pipes:
        spec = pipes.extras
        key_range = spec["partition_key_range"]  # sent by dp's launchers for single days and ranges alike
        days = days_between(key_range["start"], key_range["end"])
        started = time.monotonic()
        spark = (
            SparkSession.builder.appName(f"dp-load-{spec['table']}")
            .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .getOrCreate()
        )
        pipes.log.info(f"loading {spec['table']} for {len(days)} day(s): {days[0]} .. {days[-1]}")
        result = load(spark, spec, days)
        written = check_written(spark, spec, days)
        report(pipes, spec, days, result, written, time.monotonic() - started)
        spark.stop()


if __name__ == "__main__":
    main()
