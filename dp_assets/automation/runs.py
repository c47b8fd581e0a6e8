"""What every automated run request shares: its tags, its assets, and how days become ranges."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import dagster as dg

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
# The production run queue admits one run per value of this tag (deploy/dagster.prod.yaml), so two
# runs never write the same table at once.
TABLE_TAG = "dp/table"
TRIGGER_TAG = "dp/trigger"  # new-data | nightly: who asked for the run

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def table_assets(table: str) -> list[dg.AssetKey]:
    """The assets one table's run materializes (their blocking checks come with them)."""
    return [dg.AssetKey(["raw", table]), dg.AssetKey(table)]


def day_ranges(days: Iterable[dt.date], max_days: int) -> list[tuple[dt.date, dt.date]]:
    """Contiguous blocks of days, each at most ``max_days`` long.

    A run over a gap would make the dump fail on the days nobody delivered, so a range never spans
    one; a block longer than ``processing.max_partitions`` is split because a run may not exceed it.
    """
    listed = set(days)
    block_ends = {d + dt.timedelta(days=1) for d in listed} - listed  # the first day of each gap
    return covering_ranges(listed, avoid=block_ends, max_days=max_days)


def covering_ranges(
    days: Iterable[dt.date], avoid: Iterable[dt.date], max_days: int
) -> list[tuple[dt.date, dt.date]]:
    """As few ranges as cover ``days``, each at most ``max_days`` long and starting and ending on one
    of them: a range spans the days between two of them unless one of those is in ``avoid``."""
    blocked = sorted(set(avoid))
    out: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if out:
            first, last = out[-1]
            crosses = any(last < b < day for b in blocked)
            if not crosses and (day - first).days < max_days:
                out[-1] = (first, day)
                continue
        out.append((day, day))
    return out


def describe_ranges(ranges: Iterable[tuple[dt.date, dt.date]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in ranges)


def describe_days(days: Sequence[dt.date]) -> str:
    """Days as compact spans: ``2024-01-01..2024-01-03, 2024-01-07``."""
    return describe_ranges(day_ranges(days, max(len(days), 1)))


def range_run_request(table: str, start: dt.date, end: dt.date, run_key: str, trigger: str) -> dg.RunRequest:
    """One run of the table's dump -> load (+checks) over [start, end], tagged for the run queue."""
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=table_assets(table),
        tags={
            RANGE_START: start.isoformat(),
            RANGE_END: end.isoformat(),
            TABLE_TAG: table,
            TRIGGER_TAG: trigger,
        },
    )


def run_days(tags: dict[str, str]) -> set[dt.date]:
    """The days a run covers, from its range or single-partition tags."""
    if RANGE_START in tags and RANGE_END in tags:
        start, end = dt.date.fromisoformat(tags[RANGE_START]), dt.date.fromisoformat(tags[RANGE_END])
        return {start + dt.timedelta(days=i) for i in range((end - start).days + 1)}
    if PARTITION in tags:
        return {dt.date.fromisoformat(tags[PARTITION])}
    return set()


def days_in_flight(instance: dg.DagsterInstance, table: str) -> set[dt.date]:
    """Days that queued or running runs of the table will already materialize."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={TABLE_TAG: table}, statuses=IN_FLIGHT))
    return set().union(*(run_days(dict(r.tags)) for r in runs))
