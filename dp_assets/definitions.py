"""The code location: assembles assets, checks, jobs and resources from one loaded config."""

from dataclasses import asdict

import dagster as dg
from dagster_pyspark import PySparkResource

from dp_assets.automation import build_automation
from dp_assets.config.loader import LoadedConfig, load_config
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.launchers.runtime import sql_conf
from dp_assets.launchers.select import build_launcher
from dp_assets.partitions import daily_partitions
from dp_assets.stages.tables import build_tables_asset
from dp_assets.validate import report, validate

PIPELINE_JOB = "pipeline"
VALIDATE_JOB = "validate"


def build_validate_job() -> dg.JobDefinition:
    """`dp validate` as a Dagster job: the same findings, logged, and a failure on any error."""

    @dg.op(description="Check designs against upstream, SQL in Spark, designs against the catalog.")
    def validate_designs(
        context: dg.OpExecutionContext, pipeline: PipelineConfigResource, pyspark: PySparkResource
    ) -> None:
        loaded = pipeline.loaded
        findings = validate(loaded, pyspark.spark_session)
        for f in findings:
            (context.log.error if f.severity == "error" else context.log.warning)(f.render())
        context.log.info(report(findings, loaded).splitlines()[-1])
        if any(f.severity == "error" for f in findings):
            raise dg.Failure(
                description=report(findings, loaded),
                metadata={"findings": dg.MetadataValue.json([asdict(f) for f in findings])},
            )

    @dg.job(name=VALIDATE_JOB, description="Validation run: nothing is loaded.")
    def validate_job() -> None:
        validate_designs()

    return validate_job


def build_definitions(loaded: LoadedConfig) -> dg.Definitions:
    """Everything the config describes; the resource re-reads the same config at run start."""
    config = loaded.config
    partitions = daily_partitions(config.general)
    assets = [build_tables_asset(loaded, partitions)]
    pipeline_job = dg.define_asset_job(
        PIPELINE_JOB,
        selection=dg.AssetSelection.all(),
        description="dump -> load -> derive for every table over a range of days, as one run.",
    )
    validate_job = build_validate_job()
    automation = build_automation(loaded, PIPELINE_JOB)
    return dg.Definitions(
        assets=assets,
        jobs=[pipeline_job, validate_job],
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources={
            "pipeline": PipelineConfigResource.for_loaded(loaded),
            "spark": build_launcher(loaded),
            # In-process Spark for the validation job: plans SQL against empty tables, reads nothing.
            # With the jobs' SQL settings ([spark] ansi, UTC), so it plans what the target will run.
            "pyspark": PySparkResource(
                spark_config={
                    "spark.master": "local[1]",
                    "spark.ui.enabled": "false",
                    **sql_conf(config.spark.ansi),
                }
            ),
            **automation.resources,
        },
        metadata={"config_" + k: v for k, v in loaded.provenance.as_dict().items() if v},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, built when Dagster loads it from the config the environment names
    (CONFIG_S3_URI, .env, else the packaged one): importing this module builds nothing, so
    `dp run --config-s3 X` never builds another config first."""
    return build_definitions(load_config())
