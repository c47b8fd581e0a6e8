"""What every automated run request shares: its tags, its assets, and how days become ranges."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import dagster as dg

from dp_assets.config.model import PipelineConfig
from dp_assets.partitions import daily_partitions

if TYPE_CHECKING:
    from dp_assets.stages.derive import DerivedTable

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
# The production run queue admits one run per value of this tag (deploy/dagster.prod.yaml), so two
# runs never write the same table at once.
TABLE_TAG = "dp/table"
TRIGGER_TAG = "dp/trigger"  # new-data | nightly: who asked for the run
DERIVED_TAG = "dp/derived"  # the derived tables a run of TABLE_TAG's table builds too, comma-separated

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def table_assets(table: str) -> list[dg.AssetKey]:
    """The assets one loaded table's run materializes (their blocking checks come with them)."""
    return [dg.AssetKey(["raw", table]), dg.AssetKey(table)]


def partition_status(
    instance: dg.DagsterInstance, config: PipelineConfig, asset: str, days: Sequence[dt.date]
) -> dict[dt.date, dg.AssetPartitionStatus | None]:
    """Each day's status in Dagster: MATERIALIZED only when its latest attempt succeeded (a
    held-back load, whose blocking checks failed, is FAILED); None when never attempted."""
    status = instance.get_status_by_partition(
        dg.AssetKey(asset), [d.isoformat() for d in days], daily_partitions(config.general)
    )
    return {d: (status or {}).get(d.isoformat()) for d in days}


def complete(
    instance: dg.DagsterInstance, config: PipelineConfig, asset: str, days: Sequence[dt.date]
) -> bool:
    """Every one of ``days`` of ``asset`` is materialized, its blocking checks passed."""
    done = dg.AssetPartitionStatus.MATERIALIZED
    return all(s == done for s in partition_status(instance, config, asset, days).values())


def ready_derived(
    instance: dg.DagsterInstance,
    config: PipelineConfig,
    derived: Sequence[DerivedTable],
    table: str,
    start: dt.date,
    end: dt.date,
) -> list[str]:
    """The derived tables a run of ``table`` over [start, end] builds too, in dependency order: those
    reading it (or a derived table the run builds) once every other table they read has each of
    those days materialized, its blocking checks passed, and no queued or running run already builds
    it for one of them. The others wait for the run that completes what they read, or for their own
    nightly catch-up."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    built: list[str] = []
    for d in derived:
        reads = set(d.transform.upstream)
        written = {table, *built}
        if not reads & written or days_in_flight(instance, d.name) & set(days):
            continue
        if all(complete(instance, config, u, days) for u in sorted(reads - written)):
            built.append(d.name)
    return built


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


def range_run_request(
    table: str,
    start: dt.date,
    end: dt.date,
    run_key: str,
    trigger: str,
    assets: Sequence[dg.AssetKey],
    derived: Sequence[str] = (),
) -> dg.RunRequest:
    """One run of ``assets`` (a table's dump -> load, or a derived table) and of the ``derived``
    tables it builds too, over [start, end], tagged for the run queue; checks come with them."""
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=[*assets, *(dg.AssetKey(d) for d in derived)],
        tags={
            RANGE_START: start.isoformat(),
            RANGE_END: end.isoformat(),
            TABLE_TAG: table,
            TRIGGER_TAG: trigger,
            **({DERIVED_TAG: ",".join(derived)} if derived else {}),
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


def writes(tags: dict[str, str]) -> set[str]:
    """The tables a run writes: its own, and the derived tables it builds too."""
    return {t for t in (tags.get(TABLE_TAG), *tags.get(DERIVED_TAG, "").split(",")) if t}


def days_in_flight(instance: dg.DagsterInstance, table: str) -> set[dt.date]:
    """Days that queued or running runs writing the table will already materialize."""
    runs = [dict(r.tags) for r in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))]
    return set().union(*(run_days(tags) for tags in runs if table in writes(tags)))
