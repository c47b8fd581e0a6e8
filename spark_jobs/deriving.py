"""Compute a derived table's days from its SQL, over the same days of its upstream tables.

Each upstream table is a temporary view holding only the run's published days (just their folders
are read), so a daily derived table recomputes only its own partitions. Rows whose day falls
outside the run are not written, and counted. Like a load, the result is written, audited
(``contract.DERIVED_CHECKS``), and only then published, in the lake and the catalog.
"""

from __future__ import annotations

import time
from typing import Any

from dagster_pipes import PipesContext
from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from spark_jobs.audit import (
    Check,
    TableOutcome,
    audit,
    catalog_partitions,
    catalog_switch,
    hold_back,
    key_unique,
    rejected_version,
    report_checks,
)
from spark_jobs.common import Phases, as_int, as_json, runtime_metadata
from spark_jobs.contract import (
    COLUMN_SCHEMA,
    PARTITION_STATS,
    PROGRESS,
    RANGE_TOTALS,
    ROW_COUNT,
    SPARK_RUNTIME,
    DeriveSpec,
)
from spark_jobs.lake_io import Hdfs, Publisher


def compute(spark: SparkSession, spec: DeriveSpec, days: list[str], version: str) -> dict[str, int]:
    """Run the SQL over the run's days of its upstream tables into ``version``; how many rows it
    produced, and how many of them fell outside the run's days (not written)."""
    hdfs = Hdfs(spark)
    pc = spec["partition_column"]
    for name, upstream in spec["upstream"].items():
        published = Publisher(hdfs, upstream["uri"], upstream["partition_column"])
        frame = published.read(spark, days)  # the run's days only: just their folders are read
        if frame is None:
            everything = published.read(spark)
            if everything is None:
                raise RuntimeError(
                    f"derived table {spec['table']!r}: upstream table {name!r} has no data at "
                    f"{upstream['uri']}; materialize {name} for {days[0]}..{days[-1]} first"
                )
            frame = everything.limit(0)
        frame.createOrReplaceTempView(name)
    result = spark.sql(spec["sql"])
    if pc not in result.columns:
        raise RuntimeError(
            f"derived table {spec['table']!r}: {spec['file']} outputs no column {pc!r} "
            f"(it outputs {', '.join(result.columns)}); select the day as {pc}, or set "
            f"[derived.{spec['table']}] partition_column"
        )
    day = F.col(pc).cast("date").cast("string")
    counted = Observation(f"produced_{spec['table']}")
    result = result.observe(
        counted,
        F.count(F.lit(1)).alias("produced"),
        F.sum((~day.isin(days) | day.isNull()).cast("long")).alias("outside"),
    )
    result.where(day.isin(days)).withColumn(pc, F.col(pc).cast("date")).write.mode("overwrite").partitionBy(
        pc
    ).parquet(version)
    observed = counted.get
    return {
        "rows_produced": int(observed.get("produced") or 0),
        "rows_outside_range": int(observed.get("outside") or 0),
    }


def evaluate(spec: DeriveSpec, counts: dict[str, int], audited: dict[str, Any]) -> list[Check]:
    pc = spec["partition_column"]
    expected = [c for c in spec["columns"] if c != pc] + [pc]  # partitionBy puts the day last
    written = [n for n, _ in audited["schema"]]
    published = sum(s["rows"] for s in audited["stats"].values())
    checks = [
        Check(
            "schema_matches_sql",
            not audited["paths"] or written == expected,
            {"expected": as_json(expected), "written": as_json(written)},
        )
    ]
    if spec["key"]:
        checks.append(key_unique(spec["key"], audited))
    checks.append(
        Check(
            "row_accounting",
            counts["rows_produced"] == published + counts["rows_outside_range"],
            {
                "rows_produced": as_int(counts["rows_produced"]),
                "rows_published": as_int(published),
                "rows_outside_range": as_int(counts["rows_outside_range"]),
            },
        )
    )
    return checks


def derive_table(
    spark: SparkSession, pipes: PipesContext, spec: DeriveSpec, days: list[str], run: str, keep_seconds: float
) -> TableOutcome:
    """Write, audit, publish one derived table (see ``loading.load_table``)."""
    started, phases = time.monotonic(), Phases()
    pc = spec["partition_column"]
    publisher = Publisher(Hdfs(spark), spec["table_uri"], pc)
    catalog = catalog_switch(spark, spec["catalog_table"], spec["table_uri"], pc)
    recovered = publisher.recover(catalog)
    override = spec["publish_rejected"]
    if override:
        record = rejected_version(publisher, spec["table"], override, days)
        pipes.log.warning(
            f"derive {spec['table']}: publishing the version run {override} held back "
            f"(failed checks: {', '.join(record['failed_checks'])}), by override"
        )
        counts, source = record["counts"], publisher.rejected(override)
    else:
        pipes.log.info(
            f"{PROGRESS}derive {spec['table']}: started, {len(days)} day(s), {days[0]}..{days[-1]}"
        )
        counts, source = compute(spark, spec, days, publisher.version(run)), publisher.version(run)
    phases.done("compute and write")
    audited = audit(spark, source, days, pc, spec["key"], required=[])
    phases.done("audit (before publishing)")
    checks = evaluate(spec, counts, audited)
    if not override and any(not c.passed for c in checks):
        failed = [c.name for c in checks if not c.passed]
        record = {"run": run, "days": days, "counts": counts, "failed_checks": failed}
        return hold_back(pipes, spec["asset_key"], spec["table"], checks, [publisher], record)
    catalog = catalog_switch(spark, spec["catalog_table"], spec["table_uri"], pc, audited["schema"])
    publisher.publish(override or run, days, catalog, from_rejected=bool(override))
    phases.done("publish (lake and catalog)")
    superseded = publisher.drop_superseded(days)
    if superseded:
        pipes.log.info(f"derive {spec['table']}: dropped the rejected versions of runs {superseded}")
    expired = publisher.expire(keep_seconds)
    if expired:
        pipes.log.info(f"derive {spec['table']}: deleted {len(expired)} replaced partition version(s)")
    stats = audited["stats"]
    catalog_table = spec["catalog_table"] if catalog else None
    listed = catalog_partitions(spark, catalog_table, spec["partition_column"], days)
    phases.done("clean up")
    empty = {"rows": 0, "bytes": 0, "nulls": {}, "min": {}, "max": {}}
    pipes.report_asset_materialization(
        asset_key=spec["asset_key"],
        metadata={
            ROW_COUNT: as_int(sum(s["rows"] for s in stats.values())),  # each partition's own replaces it
            RANGE_TOTALS: as_json(
                {
                    "partitions": len(days),
                    "rows": sum(s["rows"] for s in stats.values()),
                    "rows_outside_range": counts["rows_outside_range"],
                    "bytes": audited["bytes"],
                    "spark_seconds": round(time.monotonic() - started, 2),
                }
            ),
            PARTITION_STATS: as_json({d: stats.get(d, empty) for d in days}),
            "recovered_publishes": as_json(recovered),
            COLUMN_SCHEMA: {
                "raw_value": {"columns": [{"name": n, "type": t} for n, t in audited["schema"]]},
                "type": "table_schema",
            },
            "table_uri": {"raw_value": spec["table_uri"], "type": "path"},
            "catalog_table": {"raw_value": catalog_table, "type": "text" if catalog_table else "null"},
            "catalog_partitions": as_json(listed),
            "spark_phase_seconds": as_json(phases.seconds),
            SPARK_RUNTIME: runtime_metadata(spark),
        },
    )
    report_checks(pipes, spec["asset_key"], checks, override)
    pipes.log.info(
        f"{PROGRESS}derive {spec['table']}: published, {sum(s['rows'] for s in stats.values()):,} rows in "
        f"{len(days)} partition(s) ({time.monotonic() - started:.1f} s)"
    )
    return TableOutcome([], None)
