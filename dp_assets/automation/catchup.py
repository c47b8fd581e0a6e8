"""Catch-up: which days a table is missing, read from Dagster's own partition status.

Missing is every day from the first partition up to the latest complete day whose load partition is
not materialized: never loaded, emptied by ``--clean-up``, or whose last attempt failed (a held-back
load, a missing delivery), wherever it lies, even before days that succeeded since. Days older than
``processing.retention_days`` are gone at the source and are named, not requested; days a queued or
running run of the table already covers are left to it. A derived table's day waits until every
table it reads has that day materialized, its blocking checks passed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from dp_assets.automation.runs import (
    covering_ranges,
    days_in_flight,
    describe_days,
    describe_ranges,
    partition_status,
)
from dp_assets.config.model import PipelineConfig


@dataclass(frozen=True)
class CatchUpPlan:
    table: str
    latest_complete: dt.date | None  # None: no partition is complete yet
    last_materialized: dt.date | None
    missing: list[dt.date]  # not materialized, up to the latest complete day
    failed: list[dt.date]  # missing because their last attempt failed
    unrecoverable: list[dt.date]  # missing and older than the source's retention
    in_flight: list[dt.date]  # missing but already covered by a queued or running run
    waiting: list[dt.date]  # missing, but a table it reads does not have the day yet (derived tables)
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
        if self.failed:
            parts.append(f"{describe_days(self.failed)} failed")
        if self.unrecoverable:
            parts.append(f"{len(self.unrecoverable)} past retention")
        if self.in_flight:
            parts.append(f"{describe_days(self.in_flight)} already in flight")
        if self.waiting:
            parts.append(f"{describe_days(self.waiting)} waiting for upstream")
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
    instance: dg.DagsterInstance,
    config: PipelineConfig,
    table: str,
    today: dt.date,
    reads: tuple[str, ...] = (),
    reload_between: bool = True,
) -> CatchUpPlan:
    """The days ``table`` is missing as of ``today`` (in the schedule's time zone) and what to run:
    as few runs as ``processing.max_partitions`` allows, each one spanning the days between missing
    ones (reloading a loaded day costs less than another Spark application) but never a day another
    run covers, one the source no longer holds, or one a table it ``reads`` (a derived table's
    upstream) does not have yet. A derived table is computed from the lake, so the source's
    retention does not bound it. Without ``reload_between`` (a source that only has today's
    snapshot) a run never spans a loaded day: reloading it would rewrite its history."""
    latest = latest_complete_day(config, today)
    if latest is None:
        return CatchUpPlan(table, None, None, [], [], [], [], [], [])
    start = config.general.start_date
    days = [start + dt.timedelta(days=i) for i in range((latest - start).days + 1)]
    state = partition_status(instance, config, table, days)
    done = [d for d in days if state[d] == dg.AssetPartitionStatus.MATERIALIZED]
    missing = [d for d in days if state[d] != dg.AssetPartitionStatus.MATERIALIZED]
    failed = [d for d in missing if state[d] == dg.AssetPartitionStatus.FAILED]
    oldest_held = start if reads else today - dt.timedelta(days=config.processing.retention_days)
    unrecoverable = [d for d in missing if d < oldest_held]
    flying = days_in_flight(instance, table) | {
        d for d in days if state[d] == dg.AssetPartitionStatus.IN_PROGRESS
    }
    in_flight = [d for d in missing if d >= oldest_held and d in flying]
    todo = [d for d in missing if d >= oldest_held and d not in flying]
    upstream = [partition_status(instance, config, u, todo) for u in reads]
    waiting = [d for d in todo if any(s[d] != dg.AssetPartitionStatus.MATERIALIZED for s in upstream)]
    todo = [d for d in todo if d not in set(waiting)]
    avoid = flying | set(waiting) | (set() if reload_between else set(done))
    ranges = covering_ranges(todo, avoid=avoid, max_days=config.processing.max_partitions)
    last = max(done, default=None)
    return CatchUpPlan(table, latest, last, missing, failed, unrecoverable, in_flight, waiting, ranges)
