"""Load a table's staged deliveries for a range of days into typed, Hive-partitioned Parquet.

Every staged row ends as exactly one of: loaded, quarantined (unparseable at dump, or a value that
does not fit its column's type, with the reason, file and line), or deduplicated. For each day,
rows in = loaded + quarantined + deduplicated, and the job checks it. The run's version is written,
audited, and only then published by ``lake_io.Publisher``, in the lake and Spark's catalog; the
materialization and the checks go back through Pipes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dagster_pipes import PipesContext
from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
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
    LINE,
    LOAD_DATE,
    PARTITION_STATS,
    PROGRESS,
    RANGE_TOTALS,
    RAW,
    REASON,
    ROW_COUNT,
    ROW_HASH,
    SCHEMA_EVOLUTION,
    SOURCE,
    SPARK_RUNTIME,
    STAGED_META,
    LoadSpec,
)
from spark_jobs.lake_io import Hdfs, Publisher, fault_point

STATUS = "_status"


@dataclass(frozen=True)
class Zones:
    """Where a table's run writes: the table and its quarantine, each published the same way."""

    table: Publisher
    quarantine: Publisher


_TYPE_ALIASES = {"long": "bigint", "integer": "int", "short": "smallint", "byte": "tinyint"}


def spark_type(declared: str) -> str:
    """The Spark simpleString of a declared type, so design and written schema compare equal."""
    t = declared.replace(" ", "").lower()
    return _TYPE_ALIASES.get(t, t)


def read_staged(spark: SparkSession, spec: LoadSpec, days: list[str]) -> DataFrame | None:
    pc = spec["partition_column"]
    paths = [f"{spec['staged_uri']}/{pc}={d}" for d in days if d in spec["staged_days"]]
    if not paths:
        return None
    # The staged schema is known (every delivered column a string, then the dump's own columns), so
    # Spark reads no file footers to infer it; a column a file lacks reads as null.
    columns = {**{c["name"]: "string" for c in spec["columns"]}, **STAGED_META}
    schema = ", ".join(f"{quoted(name)} {kind}" for name, kind in columns.items())
    return (
        spark.read.schema(schema)
        .option("basePath", spec["staged_uri"])
        .parquet(*paths)
        .withColumn(pc, F.col(pc).cast("date"))
    )


def quoted(name: str) -> str:
    """A column name as Spark SQL reads it, whatever characters it holds."""
    return "`" + name.replace("`", "``") + "`"


def try_cast(column: str, target: str) -> Column:
    """``column`` cast to ``target``, null where the value does not fit. SQL's TRY_CAST, because
    ``Column.try_cast`` is Spark 4 only; it behaves the same whatever ``spark.sql.ansi.enabled`` is."""
    return F.expr(f"TRY_CAST({quoted(column)} AS {target})")


def classify(staged: DataFrame, spec: LoadSpec) -> DataFrame:
    """Typed columns, the raw strings, and each row's status: loaded / quarantined / deduplicated."""
    pc = spec["partition_column"]
    typed: list[Column] = []
    cast_reasons: list[Column] = []
    for col in spec["columns"]:
        name, target = col["name"], spark_type(col["type"])
        raw = F.col(name)
        cast = raw if target == "string" else try_cast(name, target)
        typed.append(cast.alias(f"__typed_{name}"))
        cast_reasons.append(F.when(raw.isNotNull() & cast.isNull(), F.lit(f"{name}: not a valid {target}")))
    reason = F.coalesce(F.col(REASON), F.nullif(F.concat_ws("; ", *cast_reasons), F.lit("")))
    frame = staged.select(
        *[F.col(c["name"]) for c in spec["columns"]],
        *typed,
        F.col(pc),
        F.col(LINE),
        F.col(SOURCE),
        F.col(RAW),
        reason.alias(REASON),
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


def published_columns(spec: LoadSpec) -> list[tuple[str, str]]:
    return [(c["name"], spark_type(c["type"])) for c in spec["columns"]] + [
        (ROW_HASH, "string"),
        (LOAD_DATE, "date"),
        (spec["partition_column"], "date"),
    ]


def stage(
    spark: SparkSession, spec: LoadSpec, days: list[str], run: str, phases: Phases, zones: Zones
) -> dict[str, dict[str, int]]:
    """Type and account for the delivered rows, writing them to the run's version folders (nothing is
    visible yet); the rows quarantined and deduplicated per day."""
    pc = spec["partition_column"]
    table, quarantine = zones.table, zones.quarantine
    counts = {s: {d: 0 for d in days} for s in ("quarantined", "deduplicated")}
    staged = read_staged(spark, spec, days)
    if staged is not None:
        # One pass reads, types, hashes and writes the loaded rows, observing how many rows take each
        # status on the way; the rare quarantined and deduplicated rows cost a pass only when present.
        # (Caching the typed frame for a separate count cost more than all of this on 6M rows.)
        frame = classify(staged, spec)
        observation = Observation(f"statuses_{spec['table']}")  # unique: tables load side by side
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
        ).write.mode("overwrite").partitionBy(pc).parquet(table.version(run))
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
            ).write.mode("overwrite").partitionBy(pc).parquet(quarantine.version(run))
            for row in spark.read.parquet(quarantine.version(run)).groupBy(pc).count().collect():
                counts["quarantined"][row[pc].isoformat()] = row["count"]
            phases.done("write quarantined")
        fault_point("quarantined_written")
        if totals["deduplicated"]:
            for row in frame.where(F.col(STATUS) == "deduplicated").groupBy(pc).count().collect():
                counts["deduplicated"][row[pc].isoformat()] = row["count"]
            phases.done("count deduplicated")
    fault_point("version_written")
    return counts


def evaluate(
    spec: LoadSpec, days: list[str], counts: dict[str, dict[str, int]], audited: dict[str, Any]
) -> list[Check]:
    """The load's blocking checks, on the version about to be published."""
    expected = published_columns(spec)
    rows_in = {d: int(spec["manifest_rows"][d]) for d in days}
    stats = audited["stats"]
    loaded = {d: stats[d]["rows"] if d in stats else 0 for d in days}
    quarantined, deduplicated = counts["quarantined"], counts["deduplicated"]
    total_in, total_q = sum(rows_in.values()), sum(quarantined.values())
    checks: list[Check] = []

    checks.append(
        Check(
            "schema_matches_design",
            not audited["paths"] or audited["schema"] == expected,
            {
                "expected": as_json([f"{n} {t}" for n, t in expected]),
                "written": as_json([f"{n} {t}" for n, t in audited["schema"]]),
            },
        )
    )
    bad_nulls = sorted(c for c, n in audited["nulls"].items() if n)
    checks.append(
        Check(
            "required_columns_not_null",
            not bad_nulls,
            {"null_counts": as_json(audited["nulls"]), "columns_with_nulls": as_json(bad_nulls)},
        )
    )
    checks.append(key_unique(spec["key"], audited))
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
    checks.append(
        Check(
            "row_accounting",
            not mismatched,
            {
                "rows_in": as_int(total_in),
                "rows_loaded": as_int(sum(loaded.values())),
                "rows_quarantined": as_int(total_q),
                "rows_deduplicated": as_int(sum(deduplicated.values())),
                "mismatched_partitions": as_json(mismatched),
            },
        )
    )
    policy = spec["quarantine"]
    ratio = total_q / total_in if total_in else 0.0
    within = ratio <= policy["max_ratio"] and (policy["max_rows"] is None or total_q <= policy["max_rows"])
    checks.append(
        Check(
            "quarantine_within_threshold",
            within,
            {
                "rows_quarantined": as_int(total_q),
                "ratio": {"raw_value": round(ratio, 6), "type": "float"},
                "max_ratio": {"raw_value": policy["max_ratio"], "type": "float"},
                "max_rows": as_json(policy["max_rows"]),
                "quarantine_uri": {"raw_value": spec["quarantine_uri"], "type": "path"},
            },
        )
    )
    return checks


def report_materialization(
    pipes: PipesContext,
    spec: LoadSpec,
    days: list[str],
    result: dict[str, Any],
    audited: dict[str, Any],
    seconds: float,
) -> None:
    asset = spec["asset_key"]
    expected = published_columns(spec)
    rows_in = {d: int(spec["manifest_rows"][d]) for d in days}
    stats = audited["stats"]
    loaded = {d: stats[d]["rows"] if d in stats else 0 for d in days}
    quarantined, deduplicated = result["quarantined"], result["deduplicated"]
    descriptions = {c["name"]: c.get("description") or None for c in spec["columns"]}
    total_in, total_q = sum(rows_in.values()), sum(quarantined.values())

    pipes.report_asset_materialization(
        asset_key=asset,
        metadata={
            ROW_COUNT: as_int(sum(loaded.values())),  # each partition's own replaces it
            RANGE_TOTALS: as_json(
                {
                    "partitions": len(days),
                    "rows": sum(loaded.values()),
                    "rows_in": total_in,
                    "rows_quarantined": total_q,
                    "rows_deduplicated": sum(deduplicated.values()),
                    "bytes": audited["bytes"],
                    "spark_seconds": round(seconds, 2),
                }
            ),
            **(
                {"s3_credentials_for": as_json(result["s3_credentials_for"])}
                if result["s3_credentials_for"]
                else {}
            ),
            "rows_by_partition": as_json(loaded),
            "quarantined_by_partition": as_json({d: n for d, n in quarantined.items() if n}),
            PARTITION_STATS: as_json(
                {
                    d: {
                        "rows_in": rows_in[d],
                        "rows_quarantined": quarantined[d],
                        "rows_deduplicated": deduplicated[d],
                        **stats.get(d, {"rows": 0, "bytes": 0, "nulls": {}, "min": {}, "max": {}}),
                    }
                    for d in days
                }
            ),
            "recovered_publishes": as_json(result["recovered_runs"]),
            COLUMN_SCHEMA: {
                "raw_value": {
                    "columns": [
                        {"name": n, "type": t, "description": descriptions.get(n)}
                        for n, t in audited["schema"] or expected
                    ]
                },
                "type": "table_schema",
            },
            "table_uri": {"raw_value": spec["table_uri"], "type": "path"},
            "catalog_table": {
                "raw_value": result.get("catalog_table"),
                "type": "text" if result.get("catalog_table") else "null",
            },
            "catalog_partitions": as_json(result["catalog_partitions"]),
            "spark_phase_seconds": as_json(result["phases"]),
            SPARK_RUNTIME: result["runtime"],
            SCHEMA_EVOLUTION: as_json(result["evolution"]),
        },
    )


def load_table(
    spark: SparkSession,
    pipes: PipesContext,
    spec: LoadSpec,
    days: list[str],
    run: str,
    credentialed: list[str],
    keep_seconds: float,
    evolution: dict[str, Any],
) -> TableOutcome:
    """Write, audit, publish one table: type the delivered rows into the run's version, run the
    blocking checks on that, and publish it (lake, then catalog) only if they all pass. Otherwise the
    version is kept under ``_rejected/<run>/`` and nothing of it becomes visible, unless this run is
    the reviewed override that publishes a rejected version (``publish_rejected``)."""
    started, phases = time.monotonic(), Phases()
    pc = spec["partition_column"]
    hdfs = Hdfs(spark)
    zones = Zones(Publisher(hdfs, spec["table_uri"], pc), Publisher(hdfs, spec["quarantine_uri"], pc))
    catalog = catalog_switch(spark, spec["catalog_table"], spec["table_uri"], pc)
    recovered = zones.table.recover(catalog) + zones.quarantine.recover()  # the table's journal first
    phases.done("recover")
    override = spec["publish_rejected"]
    if override:
        record = rejected_version(zones.table, spec["table"], override, days)
        pipes.log.warning(
            f"load {spec['table']}: publishing the version run {override} held back "
            f"(failed checks: {', '.join(record['failed_checks'])}), by override"
        )
        counts, written = record["counts"], zones.table.rejected(override)
    else:
        pipes.log.info(f"{PROGRESS}load {spec['table']}: started, {len(days)} day(s), {days[0]}..{days[-1]}")
        counts, written = stage(spark, spec, days, run, phases, zones), zones.table.version(run)
    required = [c["name"] for c in spec["columns"] if not c["nullable"] or c["name"] in spec["key"]]
    audited = audit(spark, written, days, pc, spec["key"], required)
    phases.done("audit (before publishing)")
    checks = evaluate(spec, days, counts, audited)
    if not override and any(not c.passed for c in checks):
        failed = [c.name for c in checks if not c.passed]
        record = {"run": run, "days": days, "counts": counts, "failed_checks": failed}
        return hold_back(
            pipes, spec["asset_key"], spec["table"], checks, [zones.table, zones.quarantine], record
        )
    version = override or run
    catalog = catalog_switch(spark, spec["catalog_table"], spec["table_uri"], pc, audited["schema"])
    zones.table.publish(version, days, catalog, from_rejected=bool(override), beside=[zones.quarantine])
    phases.done("publish (lake and catalog)")
    superseded = zones.table.drop_superseded(days) + zones.quarantine.drop_superseded(days)
    if superseded:
        pipes.log.info(
            f"load {spec['table']}: dropped the rejected versions of runs {sorted(set(superseded))}"
        )
    expired = zones.table.expire(keep_seconds) + zones.quarantine.expire(keep_seconds)
    if expired:
        pipes.log.info(f"load {spec['table']}: deleted {len(expired)} replaced partition version(s)")
    catalog_table = spec["catalog_table"] if catalog else None
    listed = catalog_partitions(spark, catalog_table, spec["partition_column"], days)
    phases.done("clean up")
    result = {
        **counts,
        "recovered_runs": recovered,
        "catalog_table": catalog_table,
        "catalog_partitions": listed,
        "phases": phases.seconds,
        "s3_credentials_for": credentialed,
        "runtime": runtime_metadata(spark),
        "evolution": evolution,
    }
    report_materialization(pipes, spec, days, result, audited, time.monotonic() - started)
    report_checks(pipes, spec["asset_key"], checks, override)
    pipes.log.info(
        f"{PROGRESS}load {spec['table']}: published, {sum(s['rows'] for s in audited['stats'].values()):,} "
        f"rows in {len(days)} partition(s), {sum(counts['quarantined'].values()):,} "
        f"quarantined ({time.monotonic() - started:.1f} s)"
    )
    return TableOutcome([], None)
