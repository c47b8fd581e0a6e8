"""load: one asset per table, run as a Spark job through the launcher; checks come back via Pipes."""

from collections.abc import Iterator

import dagster as dg

from dp_assets.config.model import Table
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.lake import Lake
from dp_assets.launchers.base import SparkLauncher
from dp_assets.storage import read_json

LOAD_JOB = "load_table.py"

# Check name -> what it guarantees; the Spark job computes and reports each one.
CHECKS = {
    "schema_matches_design": "The published columns and types are exactly the design's, in order.",
    "required_columns_not_null": "Key columns and columns declared nullable = false hold no nulls.",
    "key_unique": "No two published rows share the table's key.",
    "row_accounting": "For every day: rows in the raw manifest = rows loaded + rows quarantined.",
}


def check_specs(name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(check, asset=name, description=text, blocking=True)
        for check, text in CHECKS.items()
    ]


def table_schema(table: Table) -> dg.TableSchema:
    cols = [
        dg.TableColumn(
            c.name,
            c.type,
            description=c.description or None,
            constraints=dg.TableColumnConstraints(nullable=c.nullable),
        )
        for c in table.columns
    ]
    return dg.TableSchema([*cols, dg.TableColumn(table.partition_column, "date", description="delivery day")])


def build_load_asset(name: str, table: Table, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=name,
        deps=[dg.AssetKey(["raw", name])],
        group_name="load",
        description=table.description or f"{name}, typed and partitioned by {table.partition_column}.",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=check_specs(name),
        kinds={"spark", "parquet"},
        metadata={
            "dagster/column_schema": table_schema(table),
            "partition_column": table.partition_column,
            "key": dg.MetadataValue.json(table.key),
        },
    )
    def load(
        context: dg.AssetExecutionContext, pipeline: PipelineConfigResource, spark: SparkLauncher
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        lake = Lake(pipeline.loaded)
        days = context.partition_keys
        manifest_rows = {}
        for day in days:
            path = lake.manifest_path(name, day)
            try:
                manifest_rows[day] = read_json(lake.store, path)["rows"]
            except (FileNotFoundError, KeyError) as e:
                raise dg.Failure(
                    f"table {name!r}, partition {day}: no raw manifest at {lake.uri(path)}; "
                    f"materialize raw/{name} for this partition first"
                ) from e
        extras = {
            "table": name,
            "asset_key": context.asset_key.to_user_string(),
            "design": {
                **table.model_dump(mode="json", include={"partition_column", "key", "columns"}),
                "csv": table.source.csv.model_dump(mode="json"),
            },
            "raw_uri": lake.uri(lake.raw_root(name)),
            "table_uri": lake.uri(name),
            "quarantine_uri": lake.uri(lake.quarantine_root(name)),
            "manifest_rows": manifest_rows,
        }
        for result in spark.run_job(context, LOAD_JOB, extras):
            if isinstance(result, dg.MaterializeResult):
                result = dg.MaterializeResult(
                    asset_key=result.asset_key,
                    metadata={**(result.metadata or {}), **pipeline.provenance_metadata()},
                    data_version=result.data_version,
                )
            yield result

    return load
