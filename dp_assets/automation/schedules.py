"""Nightly schedule, one per table: the latest complete day plus whatever an outage left missing.

On a normal night the gap is yesterday alone; after downtime the same tick requests the whole gap as
one run (``plan_catch_up``), so catch-up needs no separate machinery or audit table.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import dagster as dg

from dp_assets.automation.catchup import plan_catch_up
from dp_assets.automation.runs import range_run_request
from dp_assets.config.loader import LoadedConfig


def build_nightly_schedule(
    loaded: LoadedConfig, table: str, job_name: str, running: bool
) -> dg.ScheduleDefinition:
    config = loaded.config
    auto = config.automation
    tz = zoneinfo.ZoneInfo(auto.timezone)

    @dg.schedule(
        name=f"nightly_{table}",
        cron_schedule=auto.nightly_cron,
        execution_timezone=auto.timezone,
        job_name=job_name,
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Materializes {table} for the latest complete day and every day missing since the last "
            f"materialized one (within processing.retention_days), as one run."
        ),
    )
    def nightly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        now = context.scheduled_execution_time or dt.datetime.now(tz)
        plan = plan_catch_up(context.instance, config, table, now.astimezone(tz).date())
        if plan.unrecoverable:
            context.log.warning(plan.unrecoverable_message(config.processing.retention_days))
        if not plan.ranges:
            return dg.SkipReason(plan.summary())
        context.log.info(plan.summary())
        return [
            range_run_request(table, start, end, f"{table}:{start}..{end}", "nightly")
            for start, end in plan.ranges
        ]

    return nightly
