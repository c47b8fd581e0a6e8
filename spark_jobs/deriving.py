"""Compute a derived table's days from its SQL, over the same days of its upstream tables.

Each upstream table is a temporary view holding only the run's days (partition pruning reads just
those folders), so a daily derived table recomputes only its own partitions. The SQL's rows are
published per partition with the load's crash-safe swap, and each day's statistics are reported back
through Pipes. Rows whose day falls outside the run are not written, and counted.
"""

from __future__ import annotations

import time

from dagster_pipes import PipesContext
from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from spark_jobs.common import Phases, as_int, as_json, partition_stats, runtime_metadata
from spark_jobs.contract import COLUMN_SCHEMA, PARTITION_STATS, ROW_COUNT, SPARK_RUNTIME, DeriveSpec
from spark_jobs.lake_io import Hdfs, Publisher


def derive_table(
    spark: SparkSession, pipes: PipesContext, spec: DeriveSpec, days: list[str], run: str
) -> None:
    started, phases = time.monotonic(), Phases()
    pipes.log.info(f"derive {spec['table']}: {len(days)} day(s), {days[0]} .. {days[-1]}")
    hdfs = Hdfs(spark)
    pc = spec["partition_column"]
    publisher = Publisher(hdfs, spec["table_uri"], pc)
    recovered = publisher.recover()
    for name, upstream in spec["upstream"].items():
        if not hdfs.exists(upstream["uri"]):
            raise RuntimeError(
                f"derived table {spec['table']!r}: upstream table {name!r} has no data at "
                f"{upstream['uri']}; materialize {name} for {days[0]}..{days[-1]} first"
            )
        frame = spark.read.parquet(upstream["uri"])
        upc = upstream["partition_column"]
        frame.where(F.col(upc).cast("string").isin(days)).createOrReplaceTempView(name)
    result = spark.sql(spec["sql"])
    if pc not in result.columns:
        raise RuntimeError(
            f"derived table {spec['table']!r}: {spec['file']} outputs no column {pc!r} "
            f"(it outputs {', '.join(result.columns)}); select the day as {pc}, or set "
            f"[derived.{spec['table']}] partition_column"
        )
    day = F.col(pc).cast("date").cast("string")
    outside = Observation(f"outside_{spec['table']}")
    result = result.observe(outside, F.sum((~day.isin(days) | day.isNull()).cast("long")).alias("n"))
    result.where(day.isin(days)).withColumn(pc, F.col(pc).cast("date")).write.mode("overwrite").partitionBy(
        pc
    ).parquet(publisher.staging(run))
    rows_outside = int(outside.get.get("n") or 0)
    phases.done("compute and write")
    publisher.publish(run, days)
    phases.done("publish")
    paths = [f"{spec['table_uri']}/{pc}={d}" for d in days if hdfs.exists(f"{spec['table_uri']}/{pc}={d}")]
    written = spark.read.option("basePath", spec["table_uri"]).parquet(*paths) if paths else None
    stats = partition_stats(written, pc) if written is not None else {}
    phases.done("statistics (read back)")
    schema = [(f.name, f.dataType.simpleString()) for f in written.schema.fields] if written else []
    empty = {"rows": 0, "nulls": {}, "min": {}, "max": {}}
    pipes.report_asset_materialization(
        asset_key=spec["asset_key"],
        metadata={
            ROW_COUNT: as_int(sum(s["rows"] for s in stats.values())),
            "rows_outside_range": as_int(rows_outside),
            "partitions": as_int(len(days)),
            PARTITION_STATS: as_json({d: stats.get(d, empty) for d in days}),
            "recovered_publishes": as_json(recovered),
            COLUMN_SCHEMA: {
                "raw_value": {"columns": [{"name": n, "type": t} for n, t in schema]},
                "type": "table_schema",
            },
            "table_uri": {"raw_value": spec["table_uri"], "type": "path"},
            "spark_seconds": {"raw_value": round(time.monotonic() - started, 2), "type": "float"},
            "spark_phase_seconds": as_json(phases.seconds),
            SPARK_RUNTIME: runtime_metadata(spark),
        },
    )
