"""Catch-up: which days a table is missing, read from Dagster's own partition status.

The gap is every day after the last materialized partition of the table's load asset up to the
latest complete day. Days older than ``processing.retention_days`` are gone at the source and are
reported, not requested; days a queued or running run of the table already covers are left to it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from dp_assets.automation.runs import day_ranges, days_in_flight, describe_days, describe_ranges
from dp_assets.config.model import PipelineConfig


@dataclass(frozen=True)
class CatchUpPlan:
    table: str
    latest_complete: dt.date | None  # None: no partition is complete yet
    last_materialized: dt.date | None
    missing: list[dt.date]  # after the last materialized day, up to the latest complete one
    unrecoverable: list[dt.date]  # missing and older than the source's retention
    in_flight: list[dt.date]  # missing but already covered by a queued or running run
    ranges: list[tuple[dt.date, dt.date]]  # what to request: one run per block

    def unrecoverable_message(self, retention_days: int) -> str:
        return (
            f"{self.table}: {len(self.unrecoverable)} missing day(s) cannot be recovered: "
            f"{describe_days(self.unrecoverable)} are older than "
            f"processing.retention_days = {retention_days}, so the source no longer holds their "
            "deliveries. If the files still exist somewhere, restore them to the landing zone and run "
            "`dp run --start … --end …` for those days."
        )

    def summary(self) -> str:
        last = self.last_materialized or "never"
        if not self.missing:
            return f"{self.table}: nothing missing (last materialized {last}, latest {self.latest_complete})"
        parts = [f"{self.table}: last materialized {last}, {len(self.missing)} day(s) missing"]
        if self.unrecoverable:
            parts.append(f"{len(self.unrecoverable)} past retention")
        if self.in_flight:
            parts.append(f"{describe_days(self.in_flight)} already in flight")
        parts.append(f"requesting {describe_ranges(self.ranges) or 'nothing'}")
        return "; ".join(parts)


def latest_complete_day(config: PipelineConfig, today: dt.date) -> dt.date | None:
    """Yesterday, capped at the partitions' end; None before the first partition is complete."""
    general = config.general
    latest = today - dt.timedelta(days=1)
    if general.end_date is not None:
        latest = min(latest, general.end_date)
    return latest if latest >= general.start_date else None


def plan_catch_up(
    instance: dg.DagsterInstance, config: PipelineConfig, table: str, today: dt.date
) -> CatchUpPlan:
    """The days ``table`` is missing as of ``today`` (in the schedule's time zone) and what to run."""
    latest = latest_complete_day(config, today)
    if latest is None:
        return CatchUpPlan(table, None, None, [], [], [], [])
    start = config.general.start_date
    materialized = {d for key in instance.get_materialized_partitions(dg.AssetKey(table)) if (d := _day(key))}
    last = max((d for d in materialized if start <= d <= latest), default=None)
    first = last + dt.timedelta(days=1) if last else start
    missing = [first + dt.timedelta(days=i) for i in range((latest - first).days + 1)]
    oldest_held = today - dt.timedelta(days=config.processing.retention_days)
    unrecoverable = [d for d in missing if d < oldest_held]
    flying = days_in_flight(instance, table)
    in_flight = [d for d in missing if d >= oldest_held and d in flying]
    todo = [d for d in missing if d >= oldest_held and d not in flying]
    ranges = day_ranges(todo, config.processing.max_partitions)
    return CatchUpPlan(table, latest, last, missing, unrecoverable, in_flight, ranges)


def _day(partition_key: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(partition_key)
    except ValueError:
        return None
