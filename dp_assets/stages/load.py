"""load: one asset per table, run as a Spark job through the launcher; checks come back via Pipes.

The job decides schema evolution (``spark_jobs.evolution``) before typing anything, from the dump's
manifests (each staged file's columns) and the table's established schema
(``<table>/_dp_schema.json``, sent with the request), and reports it with the materialization; the
schema the table is then established with is written here.
"""

import datetime as dt
from typing import Any

import dagster as dg

from dp_assets.catalog import asset_tags, catalog_metadata, enrich_schema, table_schema
from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import Table
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.lake import Lake
from dp_assets.lineage import dataset, emit, facet, table_facets
from dp_assets.stages.dump import dump_key
from spark_jobs.contract import (
    COLUMN_SCHEMA,
    LOAD_CHECKS,
    PARTITION_STATS,
    ROW_COUNT,
    SCHEMA_EVOLUTION,
    LoadRequest,
)
from spark_jobs.storage import read_json_if_exists, write_json

SPARK_POOL = "spark"  # dagster.yaml limits it: one local Spark application (and Derby metastore) at a time


def load_check_specs(name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(check, asset=name, description=text, blocking=True)
        for check, text in LOAD_CHECKS.items()
    ]


def load_request(loaded: LoadedConfig, name: str) -> LoadRequest:
    """What the Spark job gets to load a table; it completes it from the dump's manifests
    (``spark_jobs.evolution.completed``), which the same application may write first."""
    table = loaded.config.tables[name]
    lake = Lake(loaded)
    established = read_json_if_exists(lake.store, lake.schema_path(name))
    request: LoadRequest = {
        "table": name,
        "asset_key": dg.AssetKey(name).to_user_string(),
        "partition_column": table.partition_column,
        "design": [
            {"name": c.name, "type": c.type, "nullable": c.nullable, "description": c.description}
            for c in table.columns
        ],
        "evolution": table.evolution,
        "established": established["columns"] if established else None,
        "key": table.key,
        "dedup": {"enabled": loaded.config.processing.enable_deduplication, "order_by": table.dedup_order_by},
        "quarantine": table.quarantine.model_dump(),
        "lake_uri": lake.store.root,
        "staged_uri": lake.uri(lake.staged_root(name)),
        "load_date": dt.datetime.now(dt.UTC).date().isoformat(),
        "publish_rejected": None,
        **published_at(lake, name),  # type: ignore[typeddict-item]
    }
    return request


def published_at(lake: Lake, name: str) -> dict[str, str | None]:
    """Where a load publishes the table in ``lake``'s environment: its lake folder, its
    quarantine's, and its catalog table."""
    database = lake.loaded.config.catalog_database
    return {
        "table_uri": lake.uri(name),
        "quarantine_uri": lake.uri(lake.quarantine_root(name)),
        "catalog_table": f"{database}.{name}" if database else None,
    }


def retarget(spec: LoadRequest, environment: Lake) -> LoadRequest:
    """The same load (the same staged rows, so the same columns) published into another environment."""
    return {**spec, **published_at(environment, spec["table"]), "publish_rejected": None}  # type: ignore[typeddict-item]


def partition_metadata(stats: dict[str, Any]) -> dict[str, Any]:
    """One partition's own metadata, from the job's statistics: its counts, and per column the null
    count and the min/max of numeric and date columns. Numbers are int/float entries, which the UI
    plots across partitions (Plots tab); dates and timestamps are text."""
    metadata: dict[str, Any] = {"dagster/row_count": dg.MetadataValue.int(stats["rows"])}
    for count in ("rows_in", "rows_quarantined", "rows_deduplicated", "bytes"):  # a load's accounting
        if count in stats:
            metadata[count] = dg.MetadataValue.int(stats[count])
    for column, nulls in stats["nulls"].items():
        metadata[f"stats/{column}/nulls"] = dg.MetadataValue.int(nulls)
    for bound in ("min", "max"):
        for column, value in stats[bound].items():
            if isinstance(value, bool) or value is None:
                continue
            metadata[f"stats/{column}/{bound}"] = (
                dg.MetadataValue.int(value)
                if isinstance(value, int)
                else dg.MetadataValue.float(value)
                if isinstance(value, float)
                else dg.MetadataValue.text(str(value))
            )
    return metadata


def add_partition_metadata(
    context: dg.AssetExecutionContext, key: dg.AssetKey, reported: dict[str, Any]
) -> None:
    """Move a Spark job's partition statistics from the shared metadata onto each partition's own
    materialization (Dagster gives every partition of a range the shared metadata, then its
    partition-scoped entries)."""
    by_day = reported.pop(PARTITION_STATS, None)
    for day, stats in (getattr(by_day, "value", by_day) or {}).items():
        context.add_asset_metadata(partition_metadata(stats), asset_key=key, partition_key=day)


def emit_load_lineage(
    context: dg.AssetExecutionContext,
    pipeline: PipelineConfigResource,
    lake: Lake,
    name: str,
    table: Table,
    reported: dict[str, Any],
) -> None:
    """The load's OpenLineage event (when configured): raw zone in, the table out with its metadata."""
    rows = reported.get(ROW_COUNT)
    rows = getattr(rows, "value", rows)
    stats = {"outputStatistics": facet("outputStatistics", rowCount=rows)} if rows is not None else {}
    schema = reported.get(COLUMN_SCHEMA)
    facets = table_facets(table, schema if isinstance(schema, dg.TableSchema) else table_schema(table))
    emit(
        context,
        pipeline.loaded,
        name,
        inputs=[dataset(lake.uri(lake.raw_root(name)))],
        outputs=[dataset(lake.uri(name), facets, **stats)],
    )


def load_asset_spec(name: str, table: Table) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=name,
        deps=[dump_key(name)],
        group_name="load",
        description=table.description or f"{name}, typed and partitioned by {table.partition_column}.",
        kinds={"spark", "parquet"},
        owners=table.owners,
        tags=asset_tags(table),
        metadata={
            "dagster/column_schema": table_schema(table),
            "partition_column": table.partition_column,
            "key": dg.MetadataValue.json(table.key),
            **catalog_metadata(table),
        },
    )


def finish_load(
    context: dg.AssetExecutionContext,
    pipeline: PipelineConfigResource,
    name: str,
    result: dg.MaterializeResult,
) -> dg.MaterializeResult:
    """The job's materialization of a table, completed here: partition metadata onto each partition,
    the design's catalog metadata on the schema, the evolution decided, provenance and lineage; and
    the schema the table is now established with."""
    table = pipeline.loaded.config.tables[name]
    lake = Lake(pipeline.loaded)
    key = dg.AssetKey(name)
    reported = dict(result.metadata or {})
    schema = reported.pop(SCHEMA_EVOLUTION).value  # type: ignore[union-attr]
    add_partition_metadata(context, key, reported)
    if COLUMN_SCHEMA in reported:  # as written, plus the design's catalog metadata
        reported[COLUMN_SCHEMA] = enrich_schema(reported[COLUMN_SCHEMA], table)
    evolution = (
        {
            "schema_before": dg.MetadataValue.json(schema["before"]),
            "schema_after": dg.MetadataValue.json(schema["after"]),
        }
        if schema["before"] != schema["after"]
        else {}
    )
    emit_load_lineage(context, pipeline, lake, name, table, reported)
    write_json(lake.store, lake.schema_path(name), {"columns": schema["after"]})
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            **reported,
            **evolution,
            "columns_ignored": dg.MetadataValue.json(schema["ignored"]),
            **pipeline.provenance_metadata(),
        },
        data_version=result.data_version,
    )
