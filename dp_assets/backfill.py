"""`dp backfill`: a range submitted to the deployed instance (``$DAGSTER_HOME``) as a Dagster
backfill. The instance's daemon runs it through the run queue as one run (the assets' single-run
backfill policy), on the code servers, not in this process; ``--wait`` follows it from the event log.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionStatus,
    PartitionBackfill,
)
from dagster._core.utils import make_new_backfill_id

from dp_assets.automation.runs import DERIVED_TAG, TABLE_TAG, TRIGGER_TAG, describe_days, run_days
from dp_assets.config.loader import LoadedConfig
from dp_assets.console import readable_entry
from dp_assets.definitions import build_definitions
from dp_assets.runner import RunSummary, check_range, selected_tables, summarize, table_selection

DAEMON_STALE_SECONDS = 120  # a daemon whose backfill loop has not beaten for this long is not running
_ENDED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass(frozen=True)
class Submitted:
    backfill_id: str
    names: list[str]  # the tables it materializes
    days: int
    url: str  # the backfill's page in the UI
    tags: dict[str, str]  # what its runs are tagged with


def submit_backfill(
    loaded: LoadedConfig,
    instance: dg.DagsterInstance,
    start: dt.date,
    end: dt.date,
    tables: list[str] | None,
    ui_url: str,
) -> Submitted:
    """Record a backfill of the tables' dumps, loads and derived tables over [start, end]. It is
    tagged as automation's runs are: a backfill of one loaded table waits in the queue behind that
    table's other runs (``dp/table``); catch-up counts its days as in flight."""
    days = check_range(loaded, start, end)
    names = selected_tables(loaded, tables)
    loads = [n for n in names if n in loaded.config.tables]
    derived = [n for n in names if n not in loaded.config.tables]
    tags = {
        TRIGGER_TAG: "backfill",
        **({TABLE_TAG: loads[0]} if len(loads) == 1 else {}),
        **({DERIVED_TAG: ",".join(derived)} if derived else {}),
    }
    backfill_id = make_new_backfill_id()
    partitions = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=build_definitions(loaded).resolve_asset_graph(),
            partition_names=partitions,
            asset_selection=table_selection(loaded, names),
            backfill_timestamp=time.time(),
            tags=tags,
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=f"dp backfill {start}..{end}",
            description=f"dp backfill --start {start} --end {end} --tables {','.join(names)}",
            run_config=None,
        )
    )
    return Submitted(backfill_id, names, days, f"{ui_url.rstrip('/')}/runs/b/{backfill_id}", tags)


def daemon_warning(instance: dg.DagsterInstance) -> str | None:
    """Why the backfill may not start: no daemon has run the backfill loop of this instance lately."""
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    if beat is None or time.time() - beat.timestamp > DAEMON_STALE_SECONDS:
        return (
            "no dagster-daemon has processed backfills on this instance in the last "
            f"{DAEMON_STALE_SECONDS} s: the backfill waits until one runs (`dagster-daemon run`)"
        )
    return None


def follow(
    instance: dg.DagsterInstance,
    submitted: Submitted,
    say: Callable[[str], None] = print,
    poll_seconds: float = 2.0,
) -> list[RunSummary]:
    """Print each of the backfill's runs' progress, warnings and errors as they are stored, until the
    backfill and its runs have ended; then each run's summary."""
    cursors: dict[str, str | None] = {}
    waiting_since = time.monotonic()
    while True:
        backfill = instance.get_backfill(submitted.backfill_id)
        if backfill is None:
            raise LookupError(f"backfill {submitted.backfill_id} is not on this instance")
        runs = instance.get_runs(filters=dg.RunsFilter.for_backfill(submitted.backfill_id), ascending=True)
        for run in runs:
            if run.run_id not in cursors:
                covers = describe_days(sorted(run_days(run.tags)))
                say(f"backfill {submitted.backfill_id}: run {run.run_id} covers {covers}")
            conn = instance.get_records_for_run(run.run_id, cursor=cursors.get(run.run_id))
            cursors[run.run_id] = conn.cursor
            for record in conn.records:
                if (line := readable_entry(record.event_log_entry)) is not None:
                    say(line)
        if not runs and time.monotonic() - waiting_since > DAEMON_STALE_SECONDS:
            why = daemon_warning(instance) or "it is still queued"
            say(f"backfill {submitted.backfill_id}: no run launched yet; {why}")
            waiting_since = time.monotonic()
        # Statuses were read before the records: a run seen ended has had all of its events printed.
        if backfill.status in BULK_ACTION_TERMINAL_STATUSES and all(r.status in _ENDED for r in runs):
            break
        time.sleep(poll_seconds)
    if backfill.status not in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED):
        error = backfill.error.message.strip() if backfill.error else ""
        say(f"backfill {submitted.backfill_id}: {backfill.status.value}" + (f": {error}" if error else ""))
    return [
        summarize(
            instance, r.run_id, r.status == dg.DagsterRunStatus.SUCCESS, submitted.names, submitted.days
        )
        for r in runs
    ]
