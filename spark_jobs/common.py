"""What every part of the job shares: days, phase timings, Pipes metadata values, the runtime it
runs on, S3 credentials and per-partition statistics. Imports only pyspark and the standard library."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import platform
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.contract import LOAD_DATE, QUICK_JIT, ROW_HASH


class Phases:
    """Wall time per phase of the job, reported as metadata: the profile of every load."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 2)
        self._last = now


def as_json(value: Any) -> dict[str, Any]:
    return {"raw_value": value, "type": "json"}


def as_int(value: int) -> dict[str, Any]:
    return {"raw_value": int(value), "type": "int"}


def runtime_metadata(spark: SparkSession) -> dict[str, Any]:
    """The runtime the job really ran on, as the job sees it: proof of what the launcher pinned."""
    return as_json(
        {
            "spark": spark.version,
            "application_id": spark.sparkContext.applicationId,  # one per run, whatever it covers
            "python": platform.python_version(),
            "ansi": spark.conf.get("spark.sql.ansi.enabled"),
            "time_zone": spark.conf.get("spark.sql.session.timeZone"),
            "jit": "quick compiler only" if QUICK_JIT in jvm_arguments(spark) else "both compilers",
        }
    )


def jvm_arguments(spark: SparkSession) -> list[str]:
    """The driver JVM's own arguments: what its launcher and ``SPARK_SUBMIT_OPTS`` gave it."""
    management = spark._jvm.java.lang.management.ManagementFactory  # type: ignore[union-attr]
    return list(management.getRuntimeMXBean().getInputArguments())


def use_s3_credentials(spark: SparkSession, credentials: dict[str, dict[str, str]]) -> list[str]:
    """Temporary keys from dp's role chain, set per bucket on S3A (which then also serves s3://), so
    the job reaches a lake in another account; the buckets it got keys for (never the keys)."""
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


def partition_stats(written: DataFrame, pc: str) -> dict[str, dict[str, Any]]:
    """Per partition, in one aggregation: row count, null count of every column, and min/max of the
    numeric, date and timestamp columns (the profile the UI plots across partitions)."""
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
