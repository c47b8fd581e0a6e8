"""Compute a derived table's days from its SQL, over the same days of its upstream tables.

Each upstream table is a temporary view holding only the run's days (partition pruning reads just
those folders), so a daily derived table recomputes only its own partitions. The SQL's rows are
published per partition with the load's crash-safe swap, and each day's statistics are reported back
through Pipes. Rows whose day falls outside the run are not written, and counted.
"""

from __future__ import annotations

import time

from load_table import (
    Hdfs,
    Phases,
    Publisher,
    _int,
    _json,
    days_between,
    partition_stats,
    runtime_metadata,
    use_s3_credentials,
)
from pipes_bootstrap import open_pipes
from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F


def main() -> None:
    with open_pipes() as pipes:
        spec = pipes.extras
        key_range = spec["partition_key_range"]
        days = days_between(key_range["start"], key_range["end"])
        started, phases = time.monotonic(), Phases()
        spark = SparkSession.builder.appName(f"dp-derive-{spec['table']}").getOrCreate()
        use_s3_credentials(spark, spec)
        phases.done("start Spark")
        hdfs = Hdfs(spark)
        run = pipes.run_id or f"adhoc-{int(time.time())}"
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
        outside = Observation("outside")
        result = result.observe(outside, F.sum((~day.isin(days) | day.isNull()).cast("long")).alias("n"))
        result.where(day.isin(days)).withColumn(pc, F.col(pc).cast("date")).write.mode(
            "overwrite"
        ).partitionBy(pc).parquet(publisher.staging(run))
        rows_outside = int(outside.get.get("n") or 0)
        phases.done("compute and write")
        publisher.publish(run, days)
        phases.done("publish")
        paths = [
            f"{spec['table_uri']}/{pc}={d}" for d in days if hdfs.exists(f"{spec['table_uri']}/{pc}={d}")
        ]
        written = spark.read.option("basePath", spec["table_uri"]).parquet(*paths) if paths else None
        stats = partition_stats(written, {"partition_column": pc}) if written is not None else {}
        phases.done("statistics (read back)")
        schema = [(f.name, f.dataType.simpleString()) for f in written.schema.fields] if written else []
        empty = {"rows": 0, "nulls": {}, "min": {}, "max": {}}
        pipes.report_asset_materialization(
            asset_key=spec["asset_key"],
            metadata={
                "dagster/row_count": _int(sum(s["rows"] for s in stats.values())),
                "rows_outside_range": _int(rows_outside),
                "partitions": _int(len(days)),
                "partition_stats": _json({d: stats.get(d, empty) for d in days}),
                "recovered_publishes": _json(recovered),
                "dagster/column_schema": {
                    "raw_value": {"columns": [{"name": n, "type": t} for n, t in schema]},
                    "type": "table_schema",
                },
                "table_uri": {"raw_value": spec["table_uri"], "type": "path"},
                "spark_seconds": {"raw_value": round(time.monotonic() - started, 2), "type": "float"},
                "spark_phase_seconds": _json(phases.seconds),
                "spark_runtime": runtime_metadata(spark),
            },
        )
        spark.stop()


if __name__ == "__main__":
    main()
