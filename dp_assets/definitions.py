"""The code location: assembles assets, checks, jobs and resources from one loaded config."""

from __future__ import annotations

import dagster as dg

from dp_assets.automation import build_automation
from dp_assets.config.loader import LoadedConfig, load_config
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.launchers.local import LocalSparkLauncher
from dp_assets.partitions import daily_partitions
from dp_assets.stages.derive import build_derived_assets
from dp_assets.stages.dump import build_dump_asset
from dp_assets.stages.load import build_load_asset

PIPELINE_JOB = "pipeline"


def build_definitions(loaded: LoadedConfig) -> dg.Definitions:
    """Everything the config describes; the resource re-reads the same config at run start."""
    config = loaded.config
    partitions = daily_partitions(config.general)
    assets: list[dg.AssetsDefinition] = []
    for name, table in config.tables.items():
        assets += [build_dump_asset(name, table, partitions), build_load_asset(name, table, partitions)]
    assets += build_derived_assets(loaded, partitions)
    pipeline_job = dg.define_asset_job(
        PIPELINE_JOB,
        selection=dg.AssetSelection.all(),
        description="dump -> load -> derive for every table over a range of days, as one run.",
    )
    automation = build_automation(loaded, PIPELINE_JOB)
    return dg.Definitions(
        assets=assets,
        jobs=[pipeline_job],
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources={
            "pipeline": PipelineConfigResource.for_loaded(loaded),
            "spark": LocalSparkLauncher(
                master=config.spark.master,
                conf=config.spark.conf,
                catalog_dir=str(loaded.dp_home / "catalog") if config.catalog_database else None,
            ),
            **automation.resources,
        },
        metadata={"config_" + k: v for k, v in loaded.provenance.as_dict().items() if v},
    )


defs = build_definitions(load_config())
