"""Tables are added by config, not code: the factories shape the asset graph from table designs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dp_assets.config.loader import LoadedConfig, Provenance, parse_config
from dp_assets.definitions import PIPELINE_JOB, build_definitions
from dp_assets_tests.conftest import packaged_text
from spark_jobs.contract import LOAD_CHECKS

WEATHER = """
[tables.weather]
description = "Hourly weather at the NYC airports."
partition_column = "observed_date"
key = ["origin", "time_hour"]
source = { prefix = "weather/hourly" }
columns = [
  { name = "origin", type = "string", nullable = false },
  { name = "temp", type = "double" },
  { name = "time_hour", type = "timestamp", nullable = false },
]
"""


def two_table_defs() -> dg.Definitions:
    text = packaged_text() + WEATHER
    config = parse_config(text.encode(), "two-tables.toml")
    prov = Provenance(source="file", uri="two-tables.toml", sha256="0" * 64)
    return build_definitions(LoadedConfig(config=config, provenance=prov, dp_home=Path("/tmp")))


def test_each_table_gets_dump_and_load_assets_with_blocking_checks() -> None:
    defs = two_table_defs()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    tables = ("flights", "airlines", "airports", "planes", "weather")  # tables are added by config
    assert keys == {k for t in tables for k in (f"raw/{t}", t)}
    for table in ("flights", "weather"):
        load = graph.get(dg.AssetKey(table))
        assert load.parent_keys == {dg.AssetKey(["raw", table])}
        assert load.group_name == "load" and graph.get(dg.AssetKey(["raw", table])).group_name == "dump"
        assets_def = defs.resolve_assets_def(table)
        specs = {c.key.name: c for c in assets_def.check_specs if c.asset_key == dg.AssetKey(table)}
        assert set(specs) == set(LOAD_CHECKS)
        assert all(s.blocking for s in specs.values())


def test_every_table_is_one_subsettable_multi_asset() -> None:
    """So a run of any selection is one step, and one Spark application."""
    defs = two_table_defs()
    (assets_def,) = defs.assets  # type: ignore[misc]
    assert isinstance(assets_def, dg.AssetsDefinition) and assets_def.can_subset
    assert set(assets_def.keys) == defs.resolve_asset_graph().get_all_asset_keys()


def test_partitions_and_single_run_backfills_come_from_config() -> None:
    defs = two_table_defs()
    for key in (dg.AssetKey("weather"), dg.AssetKey(["raw", "weather"])):
        asset = defs.resolve_assets_def(key)
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        partitions = asset.partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition)
        keys = partitions.get_partition_keys()
        assert keys[0] == "2013-01-01" and keys[-1] == "2013-12-31" and len(keys) == 365
    schema = defs.resolve_assets_def("weather").metadata_by_key[dg.AssetKey("weather")][
        "dagster/column_schema"
    ]
    assert [c.name for c in schema.columns] == [
        "origin",
        "temp",
        "time_hour",
        "row_hash",
        "load_date",
        "observed_date",
    ]
    assert defs.resolve_job_def(PIPELINE_JOB).partitions_def is not None
