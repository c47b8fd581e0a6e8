"""Every table of the pipeline as one subsettable multi-asset: a run is one step and one Spark
application, whatever it selects.

Dagster stays as granular as the tables: ``raw/<t>`` (the dump) and ``<t>`` (the load) per table,
one asset per derived table, each with its checks and per-partition metadata. A run's step dumps
the tables it selects (in this process for now), then hands every selected load and derived table
to ``spark_jobs/run_pipeline.py`` at once: one local spark-submit, one EMR step, one transient
cluster or one Serverless job run.

A table that fails does not hide the others: what succeeded is reported, and the step then fails
naming each table that failed (with its cause) and each that did not run because something it reads
failed in this run. Nothing downstream of a failure runs.
"""

import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import dagster as dg

from dp_assets.config.loader import LoadedConfig
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.console import EACH_LOGGED
from dp_assets.lake import Lake
from dp_assets.launchers.base import SparkLauncher
from dp_assets.liveness import table_writer
from dp_assets.stages.derive import DerivedTable, derived_tables
from dp_assets.stages.dump import (
    BLOCKING_DUMP_CHECKS,
    RestartFlags,
    dump_asset_spec,
    dump_check_specs,
    dump_key,
    dump_table,
)
from dp_assets.stages.load import (
    SPARK_POOL,
    finish_load,
    load_asset_spec,
    load_check_specs,
    load_spec,
    retarget,
    warn_evolution,
)
from spark_jobs.contract import (
    PROGRESS,
    RANGE_TOTALS,
    RUN_SCRIPT,
    SECONDARY_CHECK,
    LoadSpec,
    RunSpec,
    SecondarySpec,
)
from spark_jobs.evolution import LoadRefused

TABLES_OP = "tables"
Event = dg.MaterializeResult | dg.AssetCheckResult


class RunFailures:
    """Which selected assets failed in this run and why, and which were not run because of it."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.not_run: dict[str, str] = {}
        self.checks_failed: dict[str, str] = {}  # materialized, but a blocking check failed

    def fail(self, context: dg.AssetExecutionContext, key: dg.AssetKey, cause: str) -> None:
        self.failed[key.to_user_string()] = cause
        context.log.error(f"{key.to_user_string()} failed: {cause}")

    def skip(self, context: dg.AssetExecutionContext, key: dg.AssetKey, why: str) -> None:
        self.not_run[key.to_user_string()] = why
        context.log.warning(f"{key.to_user_string()} not run: {why}")

    def blocking(self, keys: list[dg.AssetKey]) -> list[str]:
        """Why readers of ``keys`` must not run: those that failed, did not run or failed a blocking
        check in this run."""
        why = []
        for key in (k.to_user_string() for k in keys):
            if key in self.failed:
                why.append(f"{key} failed")
            elif key in self.not_run:
                why.append(f"{key} was not run")
            elif key in self.checks_failed:
                why.append(f"{key} failed {self.checks_failed[key]}")
        return why

    def raise_if_any(self) -> None:
        if not self.failed and not self.not_run:
            return
        lines = [f"{key}: {cause}" for key, cause in self.failed.items()]
        lines += [f"{key}: not run: {why}" for key, why in self.not_run.items()]
        raise dg.Failure(
            description=f"{len(self.failed)} failed, {len(self.not_run)} not run:\n" + "\n".join(lines),
            metadata={
                EACH_LOGGED: dg.MetadataValue.json(self.failed),
                "not_run": dg.MetadataValue.json(self.not_run),
            },
        )


def error_text(exc: Exception) -> str:
    """``Class: message``; a ``dg.Failure``'s description (a plain one without its class name)."""
    if isinstance(exc, dg.Failure) and exc.description:
        return exc.description if type(exc) is dg.Failure else f"{type(exc).__name__}: {exc.description}"
    return f"{type(exc).__name__}: {exc}"


def build_tables_asset(loaded: LoadedConfig, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    config = loaded.config
    derived = derived_tables(loaded)
    specs: list[dg.AssetSpec] = []
    checks: list[dg.AssetCheckSpec] = []
    for name, table in config.tables.items():
        specs += [dump_asset_spec(name, table), load_asset_spec(name, table)]
        checks += dump_check_specs(name, table) + load_check_specs(name)
    specs += [d.asset_spec() for d in derived]
    checks += [c for d in derived for c in d.check_specs()]
    checks += secondary_check_specs(loaded, [*config.tables, *(d.name for d in derived)])

    @dg.multi_asset(
        name=TABLES_OP,
        specs=specs,
        check_specs=checks,
        can_subset=True,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=SPARK_POOL,
    )
    def tables(
        context: dg.AssetExecutionContext,
        config: RestartFlags,
        pipeline: PipelineConfigResource,
        spark: SparkLauncher,
    ) -> Iterator[Event]:
        failures = RunFailures()
        with ExitStack() as locks:
            # Each table the run writes, from its dump to its publish (a run re-dumping a day replaces
            # its raw files), in name order so two runs over overlapping tables cannot deadlock.
            for name in sorted({key.path[-1] for key in context.selected_asset_keys}):
                locks.enter_context(table_writer(context, pipeline.loaded, name))
            if config.publish_rejected:
                refuse_dumps_when_publishing(context)
            else:
                yield from dump_selected(context, config, pipeline, failures)
            yield from run_spark(context, pipeline, spark, derived, failures, config.publish_rejected)
        failures.raise_if_any()

    return tables


def secondary_check_specs(loaded: LoadedConfig, names: list[str]) -> list[dg.AssetCheckSpec]:
    """With [secondary], one non-blocking check per table: it was published there too."""
    second = loaded.secondary_environment()
    if second is None:
        return []
    text = (
        f"This run also published the table's days into the secondary environment "
        f"{loaded.config.secondary.name} ({second.output_path}, catalog database "  # type: ignore[union-attr]
        f"{second.config.catalog_database or 'none'}). Failing there warns; the primary stands."
    )
    return [dg.AssetCheckSpec(SECONDARY_CHECK, asset=n, description=text, blocking=False) for n in names]


def refuse_dumps_when_publishing(context: dg.AssetExecutionContext) -> None:
    dumps = sorted(k.to_user_string() for k in context.selected_asset_keys if k.path[0] == "raw")
    if dumps:
        raise dg.Failure(
            f"publish_rejected publishes a held-back version as it was reviewed, so it dumps nothing; "
            f"deselect {', '.join(dumps)} (`dp publish --run <id> --tables <t>` selects the tables only)"
        )


def dump_selected(
    context: dg.AssetExecutionContext,
    flags: RestartFlags,
    pipeline: PipelineConfigResource,
    failures: RunFailures,
) -> Iterator[Event]:
    """Dump each selected table; a failed dump or a failed blocking dump check stops its load only."""
    for name in pipeline.loaded.config.tables:
        key = dump_key(name)
        if key not in context.selected_asset_keys:
            continue
        context.log.info(f"{PROGRESS}dump {name}: started, {len(context.partition_keys)} day(s)")
        started = time.monotonic()
        try:
            for event in dump_table(context, flags, pipeline, name):
                yield event
                if isinstance(event, dg.MaterializeResult) and RANGE_TOTALS in (event.metadata or {}):
                    totals = event.metadata[RANGE_TOTALS].value  # type: ignore[index,union-attr]
                    context.log.info(
                        f"{PROGRESS}dump {name}: done, {totals['rows']:,} rows in {totals['partitions']} "
                        f"partition(s) ({time.monotonic() - started:.1f} s)"
                    )
                failed = (
                    isinstance(event, dg.AssetCheckResult)
                    and not event.passed
                    and event.severity == dg.AssetCheckSeverity.ERROR  # a WARN (mask, hash) lets the load run
                )
                if failed and event.check_name in BLOCKING_DUMP_CHECKS:
                    failures.checks_failed[key.to_user_string()] = f"blocking check {event.check_name}"
        except Exception as exc:  # the other tables go on; the step fails at the end
            failures.fail(context, key, error_text(exc))


def run_spark(
    context: dg.AssetExecutionContext,
    pipeline: PipelineConfigResource,
    spark: SparkLauncher,
    derived: list[DerivedTable],
    failures: RunFailures,
    publish_rejected: str | None = None,
) -> Iterator[Event]:
    """The selected loads and derived tables, as one Spark application (with ``publish_rejected``,
    the loads publish the versions that run's checks held back instead)."""
    loaded = pipeline.loaded
    lake = Lake(loaded)
    selected = context.selected_asset_keys
    loads: list[LoadSpec] = []
    schemas: dict[str, dict[str, Any]] = {}
    for name in loaded.config.tables:
        key = dg.AssetKey(name)
        if key not in selected:
            continue
        if blocked := failures.blocking([dump_key(name)]):
            failures.skip(context, key, f"upstream {'; '.join(blocked)}")
            continue
        try:
            spec, schemas[name] = load_spec(loaded, name, context.partition_keys)
        except LoadRefused as exc:
            failures.fail(context, key, error_text(exc))
            continue
        warn_evolution(context, name, schemas[name])
        spec["publish_rejected"] = publish_rejected  # the job logs the override, naming the failed checks
        loads.append(spec)
    derives = []
    for table in derived:
        key = dg.AssetKey(table.name)
        if key not in selected:
            continue
        if blocked := failures.blocking([dg.AssetKey(t) for t in table.transform.upstream]):
            failures.skip(context, key, f"upstream {'; '.join(blocked)}")
            continue
        derives.append(table)
    if not loads and not derives:
        return
    # A reviewed override publishes what the primary held back; the secondary gets the next run.
    second = None if publish_rejected else loaded.secondary_environment()
    secondary: SecondarySpec | None = None
    credentials = lake.spark_credentials()  # Pipes context only: never logged or shown
    if second is not None:
        there = Lake(second)
        secondary = {
            "name": loaded.config.secondary.name,  # type: ignore[union-attr]
            "loads": [retarget(s, there) for s in loads],
            "derives": [d.spec(there) for d in derives],
        }
        credentials = {**credentials, **there.spark_credentials()}
    run_spec: RunSpec = {
        "partition_key_range": {"start": context.partition_keys[0], "end": context.partition_keys[-1]},
        "loads": loads,
        "derives": [{**d.spec(lake), "publish_rejected": publish_rejected} for d in derives],
        "secondary": secondary,
        "s3_credentials": credentials,
        "keep_superseded_seconds": loaded.config.processing.keep_superseded_hours * 3600,
    }
    written = sorted({s["table"] for s in loads} | {d.name for d in derives})
    work = [f"load {', '.join(s['table'] for s in loads)}"] if loads else []
    work += [f"derive {', '.join(d.name for d in derives)}"] if derives else []
    then = f", then the same into {secondary['name']}" if secondary else ""
    context.log.info(f"{PROGRESS}spark: starting one application to {' and '.join(work)}{then}")
    by_name = {d.name: d for d in derives}
    try:
        report = spark.run_job(context, RUN_SCRIPT, run_spec)
    except Exception as exc:  # the application failed as a whole: each of its tables did
        for name in written:
            failures.fail(context, dg.AssetKey(name), f"the Spark application failed: {error_text(exc)}")
        return
    materialized = set()
    for result in report.results:
        if isinstance(result, dg.MaterializeResult) and result.asset_key is not None:
            name = result.asset_key.to_user_string()
            materialized.add(name)
            result = (
                finish_load(context, pipeline, name, schemas[name], result)
                if name in schemas
                else by_name[name].finish(context, pipeline, result)
            )
        yield result
    outcome = report.outcome or {"failed": {}, "not_run": {}}
    for key, cause in outcome["failed"].items():
        failures.fail(context, dg.AssetKey.from_user_string(key), cause)
    for key, why in outcome["not_run"].items():
        failures.skip(context, dg.AssetKey.from_user_string(key), why)
    for name in written:
        if name not in materialized and name not in outcome["failed"] and name not in outcome["not_run"]:
            failures.fail(context, dg.AssetKey(name), "the Spark job reported nothing for it")
    if publish_rejected and loaded.config.secondary:
        days = f"--start {context.partition_keys[0]} --end {context.partition_keys[-1]}"
        for name in sorted(materialized):
            yield dg.AssetCheckResult(
                asset_key=name,
                check_name=SECONDARY_CHECK,
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    f"not published to {loaded.config.secondary.name}: an override publishes the reviewed "
                    f"version into the primary only; `dp run {days} --tables {name}` publishes the days "
                    "into both"
                ),
            )
