"""Derived tables: one asset per SQL file, its upstream assets and column lineage parsed from the SQL.

The SQL is checked when the definitions load (syntax, unknown tables and columns, cycles: see
transforms/sql.py), so a broken file stops the code location with a message naming it, instead of
failing a nightly run. Each runs in the run's one Spark application, after the loads, over the
run's days only (spark_jobs/deriving.py).
"""

from dataclasses import dataclass
from pathlib import PurePosixPath

import dagster as dg

from dp_assets.catalog import asset_tags
from dp_assets.config.loader import ConfigError, LoadedConfig
from dp_assets.config.model import LOAD_DATE, ROW_HASH, Derived
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.lake import Lake
from dp_assets.stages.load import add_partition_metadata
from dp_assets.transforms.sql import Transform, TransformError, discover
from spark_jobs.contract import DERIVED_CHECKS, DeriveSpec


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


@dataclass(frozen=True)
class DerivedTable:
    """A derived table as the run sees it: its parsed SQL, settings and the day columns it reads."""

    transform: Transform
    settings: Derived
    partition_column: str
    upstream: dict[str, str]  # upstream table -> its day column

    @property
    def name(self) -> str:
        return self.transform.name

    def asset_spec(self) -> dg.AssetSpec:
        transform = self.transform
        return dg.AssetSpec(
            key=self.name,
            deps=[dg.AssetKey(t) for t in transform.upstream],
            group_name="derive",
            description=self.settings.description
            or f"Derived from {', '.join(transform.upstream)} by {transform.file}.",
            kinds={"spark", "sql", "parquet"},
            owners=self.settings.owners,
            tags=asset_tags(self.settings),
            metadata={
                "sql_file": transform.file,
                "sql": dg.MetadataValue.md(f"```sql\n{transform.sql.strip()}\n```"),
                "upstream_from_sql": dg.MetadataValue.json(list(transform.upstream)),
                "partition_column": self.partition_column,
                "dagster/column_lineage": column_lineage(transform),
            },
        )

    def check_specs(self) -> list[dg.AssetCheckSpec]:
        checks = {k: v for k, v in DERIVED_CHECKS.items() if k != "key_unique" or self.settings.key}
        return [
            dg.AssetCheckSpec(c, asset=self.name, description=d, blocking=True) for c, d in checks.items()
        ]

    def spec(self, lake: Lake) -> DeriveSpec:
        """What the Spark job gets for this table."""
        database = lake.loaded.config.catalog_database
        return {
            "table": self.name,
            "asset_key": dg.AssetKey(self.name).to_user_string(),
            "file": self.transform.file,
            "sql": self.transform.sql,
            "partition_column": self.partition_column,
            "upstream": {t: {"uri": lake.uri(t), "partition_column": pc} for t, pc in self.upstream.items()},
            "table_uri": lake.uri(self.name),
            "columns": list(self.transform.columns),
            "key": list(self.settings.key),
            "catalog_table": f"{database}.{self.name}" if database else None,
            "publish_rejected": None,
        }

    def finish(
        self,
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfigResource,
        result: dg.MaterializeResult,
    ) -> dg.MaterializeResult:
        """The job's materialization, completed: partition metadata, column lineage, provenance."""
        key = dg.AssetKey(self.name)
        reported = dict(result.metadata or {})
        add_partition_metadata(context, key, reported)
        return dg.MaterializeResult(
            asset_key=key,
            metadata={
                **reported,
                "dagster/column_lineage": column_lineage(self.transform),
                **pipeline.provenance_metadata(),
            },
        )


def derived_tables(loaded: LoadedConfig) -> list[DerivedTable]:
    """The config's derived tables in dependency order, each knowing its upstream day columns."""
    day_columns = {name: table.partition_column for name, table in loaded.config.tables.items()}
    tables = []
    for name, transform in discover_transforms(loaded).items():
        settings = loaded.config.derived.get(name, Derived())
        day_columns[name] = partition_column(transform, settings, day_columns)
        unknown = [c for c in settings.key if c not in transform.columns]
        if unknown:
            raise ConfigError(
                f"{transform.file}: [derived.{name}] key names {', '.join(unknown)}, which the SQL does not "
                f"output (it outputs {', '.join(transform.columns)})"
            )
        upstream = {t: day_columns[t] for t in transform.upstream}
        tables.append(DerivedTable(transform, settings, day_columns[name], upstream))
    return tables
