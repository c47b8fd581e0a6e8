"""Derived tables: one asset per SQL file, its upstream assets and column lineage parsed from the SQL.

The SQL is checked when the definitions load (syntax, unknown tables and columns, cycles: see
transforms/sql.py), so a broken file stops the code location with a message naming it, instead of
failing a nightly run. The asset runs `spark_jobs/transform_table.py` through the same launcher as
the loads, over the run's days only.
"""

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import dagster as dg

from dp_assets.catalog import asset_tags
from dp_assets.config.loader import ConfigError, LoadedConfig
from dp_assets.config.model import LOAD_DATE, ROW_HASH, Derived
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.lake import Lake
from dp_assets.launchers.base import SparkLauncher
from dp_assets.liveness import table_writer
from dp_assets.stages.load import SPARK_POOL, add_partition_metadata
from dp_assets.transforms.sql import Transform, TransformError, discover

TRANSFORM_JOB = "transform_table.py"


def published_schemas(loaded: LoadedConfig) -> dict[str, dict[str, str]]:
    """Each configured table as the load publishes it: design columns, row_hash, load_date, day."""
    return {
        name: {
            **{c.name: c.type for c in table.columns},
            ROW_HASH: "string",
            LOAD_DATE: "date",
            table.partition_column: "date",
        }
        for name, table in loaded.config.tables.items()
    }


def discover_transforms(loaded: LoadedConfig) -> dict[str, Transform]:
    """The config's derived tables, parsed and checked; a broken one is a config error naming its file."""
    files = loaded.sql_files
    try:
        transforms = discover(files, published_schemas(loaded))
    except TransformError as e:
        raise ConfigError(f"derived tables of {loaded.provenance.uri}: {e}") from e
    unknown = sorted(set(loaded.config.derived) - set(transforms))
    if unknown:
        folder = loaded.config.general.transforms_path
        raise ConfigError(
            f"{loaded.provenance.uri}: [derived.{unknown[0]}] has no SQL file {folder}/{unknown[0]}.sql "
            f"beside the config; add the file or remove the section (SQL files found: "
            f"{', '.join(PurePosixPath(f).name for f in files) or 'none'})"
        )
    return transforms


def partition_column(transform: Transform, settings: Derived, known: dict[str, str]) -> str:
    """The derived table's day column: as set, else the one its upstream tables share."""
    if settings.partition_column:
        column = settings.partition_column
    else:
        shared = {known[t] for t in transform.upstream}
        if len(shared) != 1:
            raise ConfigError(
                f"{transform.file}: its upstream tables partition by {', '.join(sorted(shared))}; set "
                f'[derived.{transform.name}] partition_column = "<the output column holding the day>"'
            )
        column = shared.pop()
    if column not in transform.columns:
        raise ConfigError(
            f"{transform.file}: outputs no column {column!r} to partition by (it outputs "
            f"{', '.join(transform.columns)}); select the day as {column}"
        )
    return column


def column_lineage(transform: Transform) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        {
            column: [dg.TableColumnDep(asset_key=dg.AssetKey(t), column_name=c) for t, c in deps]
            for column, deps in transform.lineage.items()
        }
    )


def build_derived_assets(
    loaded: LoadedConfig, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """One asset per SQL file, built in dependency order so each knows its upstream day columns."""
    day_columns = {name: table.partition_column for name, table in loaded.config.tables.items()}
    assets = []
    for name, transform in discover_transforms(loaded).items():
        settings = loaded.config.derived.get(name, Derived())
        day_columns[name] = partition_column(transform, settings, day_columns)
        upstream = {t: day_columns[t] for t in transform.upstream}
        assets.append(build_derived_asset(transform, settings, day_columns[name], upstream, partitions))
    return assets


def build_derived_asset(
    transform: Transform,
    settings: Derived,
    pc: str,
    upstream_pcs: dict[str, str],
    partitions: dg.PartitionsDefinition,
) -> dg.AssetsDefinition:
    name = transform.name

    @dg.asset(
        key=name,
        deps=[dg.AssetKey(t) for t in transform.upstream],
        group_name="derive",
        description=settings.description
        or f"Derived from {', '.join(transform.upstream)} by {transform.file}.",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"spark", "sql", "parquet"},
        owners=settings.owners,
        tags=asset_tags(settings),
        pool=SPARK_POOL,
        metadata={
            "sql_file": transform.file,
            "sql": dg.MetadataValue.md(f"```sql\n{transform.sql.strip()}\n```"),
            "upstream_from_sql": dg.MetadataValue.json(list(transform.upstream)),
            "partition_column": pc,
            "dagster/column_lineage": column_lineage(transform),
        },
    )
    def derive(
        context: dg.AssetExecutionContext, pipeline: PipelineConfigResource, spark: SparkLauncher
    ) -> Iterator[dg.MaterializeResult]:
        lake = Lake(pipeline.loaded)
        extras: dict[str, Any] = {
            "table": name,
            "asset_key": dg.AssetKey(name).to_user_string(),
            "file": transform.file,
            "sql": transform.sql,
            "partition_column": pc,
            "upstream": {t: {"uri": lake.uri(t), "partition_column": upc} for t, upc in upstream_pcs.items()},
            "table_uri": lake.uri(name),
            "s3_credentials": lake.spark_credentials(),  # Pipes context only: never logged or shown
        }
        with table_writer(context, pipeline.loaded, name):
            for result in spark.run_job(context, TRANSFORM_JOB, extras):
                if isinstance(result, dg.MaterializeResult):
                    reported = dict(result.metadata or {})
                    add_partition_metadata(context, reported)
                    result = dg.MaterializeResult(
                        asset_key=result.asset_key,
                        metadata={
                            **reported,
                            "dagster/column_lineage": column_lineage(transform),
                            **pipeline.provenance_metadata(),
                        },
                    )
                yield result

    return derive
