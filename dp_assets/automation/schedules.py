"""Nightly schedule, one per table and per derived table: the latest complete day plus whatever an
outage or a failure left missing.

On a normal night the gap is yesterday alone; after downtime the same tick requests the whole gap in
as few runs as the partition limit allows (``plan_catch_up``), so catch-up needs no separate
machinery or audit table. A loaded table's run builds the derived tables that read it too, once
what else they read is there (``ready_derived``); a derived table's own schedule catches up the days
whose upstream completed later.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

import dagster as dg

from dp_assets.automation.catchup import plan_catch_up
from dp_assets.automation.runs import range_run_request, ready_derived, table_assets
from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import PostgresSource
from dp_assets.stages.derive import DerivedTable


def build_nightly_schedule(
    loaded: LoadedConfig, table: str, job_name: str, running: bool, derived: Sequence[DerivedTable] = ()
) -> dg.ScheduleDefinition:
    config = loaded.config
    auto = config.automation
    tz = zoneinfo.ZoneInfo(auto.timezone)
    own = next((d for d in derived if d.name == table), None)  # None: a loaded table
    reads = tuple(own.transform.upstream) if own else ()
    source = None if own else config.tables[table].source
    snapshot = isinstance(source, PostgresSource) and source.date_column is None
    what = (
        f"{table} for the latest complete day and every day not materialized since the partitions "
        f"start (within processing.retention_days)"
    )

    @dg.schedule(
        name=f"nightly_{table}",
        cron_schedule=auto.nightly_cron,
        execution_timezone=auto.timezone,
        job_name=job_name,
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Materializes {what}, once {', '.join(reads)} have those days."
            if own
            else f"Materializes {what}, with the derived tables that read it once their upstream is there."
        ),
    )
    def nightly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        now = context.scheduled_execution_time or dt.datetime.now(tz)
        today = now.astimezone(tz).date()
        plan = plan_catch_up(context.instance, config, table, today, reads, reload_between=not snapshot)
        if plan.unrecoverable:
            context.log.warning(plan.unrecoverable_message(config.processing.retention_days))
        if not plan.ranges:
            return dg.SkipReason(plan.summary())
        context.log.info(plan.summary())
        if own:
            assets = [dg.AssetKey(table)]
            return [
                range_run_request(table, start, end, f"{table}:{start}..{end}", "nightly", assets)
                for start, end in plan.ranges
            ]
        return [
            range_run_request(
                table,
                start,
                end,
                f"{table}:{start}..{end}",
                "nightly",
                table_assets(table),
                ready_derived(context.instance, config, derived, table, start, end),
            )
            for start, end in plan.ranges
        ]

    return nightly
