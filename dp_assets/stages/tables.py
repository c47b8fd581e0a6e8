"""Every table of the pipeline as one subsettable multi-asset: a run is one step and one Spark
application, whatever it selects.

Dagster stays as granular as the tables: ``raw/<t>`` (the dump) and ``<t>`` (the load) per table,
one asset per derived table, each with its checks and per-partition metadata. A run's step lists
the deliveries of the tables it dumps (and extracts database tables), then hands every selected
dump, load and derived table to ``spark_jobs/run_pipeline.py`` at once: one local spark-submit, one
EMR step, one transient cluster or one Serverless job run. The delivered bytes are copied, parsed
and scanned there, on the executors; this process reads the manifests the dumps wrote.

A table that fails does not hide the others: what succeeded is reported, and the step then fails
naming each table that failed (with its cause) and each that did not run because something it reads
failed in this run. Nothing downstream of a failure runs.
"""

from collections.abc import Generator, Iterator
from contextlib import ExitStack

import dagster as dg

from dp_assets.config.loader import LoadedConfig
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.console import EACH_LOGGED
from dp_assets.lake import Lake
from dp_assets.launchers.base import JobEvent, SparkLauncher
from dp_assets.liveness import table_writer
from dp_assets.stages.derive import DerivedTable, derived_tables
from dp_assets.stages.dump import (
    RestartFlags,
    dump_asset_spec,
    dump_check_specs,
    dump_key,
    prepare_dump,
    report_dump,
)
from dp_assets.stages.load import (
    SPARK_POOL,
    finish_load,
    load_asset_spec,
    load_check_specs,
    load_request,
    retarget,
)
from spark_jobs.contract import (
    DUMPED_MESSAGE,
    OUTCOME_MESSAGE,
    PROGRESS,
    RUN_SCRIPT,
    SECONDARY_CHECK,
    DumpDone,
    DumpSpec,
    LoadRequest,
    RunOutcome,
    RunSpec,
    SecondarySpec,
)

TABLES_OP = "tables"
Event = dg.MaterializeResult | dg.AssetCheckResult


class RunFailures:
    """Which selected assets failed in this run and why, and which were not run because of it."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.not_run: dict[str, str] = {}

    def fail(self, context: dg.AssetExecutionContext, key: dg.AssetKey, cause: str) -> None:
        self.failed[key.to_user_string()] = cause
        context.log.error(f"{key.to_user_string()} failed: {cause}")

    def skip(self, context: dg.AssetExecutionContext, key: dg.AssetKey, why: str) -> None:
        self.not_run[key.to_user_string()] = why
        context.log.warning(f"{key.to_user_string()} not run: {why}")

    def blocking(self, keys: list[dg.AssetKey]) -> list[str]:
        """Why readers of ``keys`` must not run: those that failed or did not run in this run (a
        blocking check's failure stops readers in the job)."""
        why = []
        for key in (k.to_user_string() for k in keys):
            if key in self.failed:
                why.append(f"{key} failed")
            elif key in self.not_run:
                why.append(f"{key} was not run")
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
            dumps: dict[str, DumpSpec] = {}
            if config.publish_rejected:
                refuse_dumps_when_publishing(context)
            else:
                dumps = prepare_dumps(context, config, pipeline, failures)
            yield from run_spark(context, pipeline, spark, derived, failures, dumps, config.publish_rejected)
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


def prepare_dumps(
    context: dg.AssetExecutionContext,
    flags: RestartFlags,
    pipeline: PipelineConfigResource,
    failures: RunFailures,
) -> dict[str, DumpSpec]:
    """Each selected table's dump, for the run's application; a table whose delivery cannot be
    listed (or extracted) fails here, and its load does not run."""
    dumps = {}
    for name in pipeline.loaded.config.tables:
        key = dump_key(name)
        if key not in context.selected_asset_keys:
            continue
        try:
            dumps[name] = prepare_dump(context, flags, pipeline, name)
        except Exception as exc:  # the other tables go on; the step fails at the end
            failures.fail(context, key, error_text(exc))
    return dumps


class Application:
    """A Spark application's events as its launcher yields them while it runs; when the application
    fails, ``error`` says how, and what it reported before that stands. Leaving its ``with`` block
    closes the launcher's generator, so a step failing while it handles an event stops the
    application (a traceback holding the step's frame would keep the generator, and Spark, alive)."""

    def __init__(self, events: Generator[JobEvent, None, None]) -> None:
        self._events, self.error = events, None

    def __enter__(self) -> "Application":
        return self

    def __exit__(self, *_: object) -> None:
        self._events.close()

    def __iter__(self) -> Iterator[JobEvent]:
        try:
            yield from self._events
        except Exception as exc:  # the launcher's only: errors in handling an event stay the step's
            self.error = f"the Spark application failed: {error_text(exc)}"


def run_spark(
    context: dg.AssetExecutionContext,
    pipeline: PipelineConfigResource,
    spark: SparkLauncher,
    derived: list[DerivedTable],
    failures: RunFailures,
    dumps: dict[str, DumpSpec],
    publish_rejected: str | None = None,
) -> Iterator[Event]:
    """The selected dumps, loads and derived tables, as one Spark application (with
    ``publish_rejected``, the loads publish the versions that run's checks held back instead)."""
    loaded = pipeline.loaded
    lake = Lake(loaded)
    selected = context.selected_asset_keys
    loads: list[LoadRequest] = []
    for name in loaded.config.tables:
        key = dg.AssetKey(name)
        if key not in selected:
            continue
        if blocked := failures.blocking([dump_key(name)]):
            failures.skip(context, key, f"upstream {'; '.join(blocked)}")
            continue
        request = load_request(loaded, name)
        request["publish_rejected"] = publish_rejected  # the job logs the override, naming the failed checks
        loads.append(request)
    derives = []
    for table in derived:
        key = dg.AssetKey(table.name)
        if key not in selected:
            continue
        if blocked := failures.blocking([dg.AssetKey(t) for t in table.transform.upstream]):
            failures.skip(context, key, f"upstream {'; '.join(blocked)}")
            continue
        derives.append(table)
    if not dumps and not loads and not derives:
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
        "dumps": list(dumps.values()),
        "loads": loads,
        "derives": [{**d.spec(lake), "publish_rejected": publish_rejected} for d in derives],
        "secondary": secondary,
        "s3_credentials": credentials,
        "keep_superseded_seconds": loaded.config.processing.keep_superseded_hours * 3600,
    }
    written = sorted({s["table"] for s in loads} | {d.name for d in derives})
    work = [f"dump {', '.join(dumps)}"] if dumps else []
    work += [f"load {', '.join(s['table'] for s in loads)}"] if loads else []
    work += [f"derive {', '.join(d.name for d in derives)}"] if derives else []
    then = f", then the same into {secondary['name']}" if secondary else ""
    context.log.info(f"{PROGRESS}spark: starting one application to {' and '.join(work)}{then}")
    by_name = {d.name: d for d in derives}
    loaded_names = {s["table"] for s in loads}
    reported: set[str] = set()  # asset keys the job reported as done
    outcome: RunOutcome = {"failed": {}, "not_run": {}}
    with Application(spark.run_job(context, RUN_SCRIPT, run_spec)) as application:
        for event in application:
            if isinstance(event, dict):  # a custom message
                if DUMPED_MESSAGE in event:
                    done: DumpDone = event[DUMPED_MESSAGE]
                    name = done["table"]
                    reported.add(dump_key(name).to_user_string())
                    yield from report_dump(context, pipeline, name, dumps[name], done["seconds"])
                outcome = event.get(OUTCOME_MESSAGE, outcome)
                continue
            if isinstance(event, dg.MaterializeResult) and event.asset_key is not None:
                name = event.asset_key.to_user_string()
                reported.add(name)
                event = (
                    finish_load(context, pipeline, name, event)
                    if name in loaded_names
                    else by_name[name].finish(context, pipeline, event)
                )
            yield event
    for key, cause in outcome["failed"].items():
        failures.fail(context, dg.AssetKey.from_user_string(key), cause)
    for key, why in outcome["not_run"].items():
        failures.skip(context, dg.AssetKey.from_user_string(key), why)
    for name in [*(dump_key(n).to_user_string() for n in dumps), *written]:
        if name not in reported and name not in outcome["failed"] and name not in outcome["not_run"]:
            cause = application.error or "the Spark job reported nothing for it"
            failures.fail(context, dg.AssetKey.from_user_string(name), cause)
    materialized = reported & set(written)
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
