"""New-data sensor: one per table, watching its landing prefix through the Store abstraction.

Upstream drops files at ``<input_path>/<prefix>/<YYYY-MM-DD>/<file>``, so keys sort by day. A tick
lists from where the last one stopped (S3 ``StartAfter``; a pruned directory walk locally) instead of
listing the whole prefix. To see a file rewritten after the cursor passed it, each tick also re-lists
the last ``rewrite_lookback_days`` days before the newest delivery and compares every key's version
(ETag + LastModified on S3, size + mtime locally) with the one the cursor recorded. Rewrites of older
days are not seen: re-run those with ``dp run``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from dp_assets.automation.runs import (
    day_ranges,
    describe_ranges,
    range_run_request,
    ready_derived,
    table_assets,
)
from dp_assets.config.loader import LoadedConfig
from dp_assets.lake import Lake
from dp_assets.partitions import daily_partitions
from dp_assets.stages.derive import DerivedTable
from spark_jobs.storage import Store, StoredFile

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURSOR_VERSION = 1
_EXAMPLES = 5  # skipped keys named per log line


@dataclass
class DeliveryCursor:
    """Where a table's sensor stopped; stored as the sensor cursor, so it survives restarts."""

    after: str | None = None  # the last key listed: the next tick resumes after it
    newest_day: str | None = None  # the newest delivery day accepted: the re-list window ends there
    seen: dict[str, str] = field(default_factory=dict)  # key -> version tag, for keys in the window

    @classmethod
    def parse(cls, text: str | None) -> DeliveryCursor:
        if not text:
            return cls()
        data = json.loads(text)
        if data.get("v") != _CURSOR_VERSION:
            raise ValueError(
                f"sensor cursor version {data.get('v')!r} is not {_CURSOR_VERSION}; reset the sensor's "
                "cursor in the UI (the sensor then lists the whole prefix once)"
            )
        return cls(after=data["after"], newest_day=data["newest_day"], seen=dict(data["seen"]))

    def dump(self) -> str:
        return json.dumps(
            {"v": _CURSOR_VERSION, "after": self.after, "newest_day": self.newest_day, "seen": self.seen},
            sort_keys=True,
            separators=(",", ":"),
        )

    def window_start(self, prefix: str, lookback_days: int) -> str | None:
        """The marker before the oldest day a tick re-lists, or None before any delivery was seen."""
        if self.newest_day is None:
            return None
        first = dt.date.fromisoformat(self.newest_day) - dt.timedelta(days=lookback_days)
        return f"{prefix}/{first.isoformat()}"  # sorts before "<prefix>/<first>/<file>"


@dataclass(frozen=True)
class Scan:
    start: str | None  # the StartAfter marker the listing began at
    listed: list[StoredFile]  # every file the tick listed, in key order
    new: list[StoredFile]  # not seen before, or seen with another version
    cursor: DeliveryCursor  # to store once the tick's run requests are made
    truncated: bool  # the listing stopped at the limit: more is waiting


def scan(store: Store, prefix: str, cursor: DeliveryCursor, lookback_days: int, max_keys: int) -> Scan:
    """List what is new or rewritten under ``prefix`` since ``cursor``.

    The limit covers the re-listed window (every key of it is in ``cursor.seen``) plus ``max_keys``,
    so a tick always gets past the window even when a backlog is larger than one tick takes.
    """
    window = cursor.window_start(prefix, lookback_days)
    start = min(window, cursor.after) if window and cursor.after else (window or cursor.after)
    limit = max_keys + len(cursor.seen)
    raw = store.list_after(prefix, start, limit)
    listed = [f for f in raw if not _hidden(f.path)]
    new = [f for f in listed if cursor.seen.get(f.path) != version_tag(f)]
    after = max(filter(None, (cursor.after, raw[-1].path if raw else None)), default=None)
    seen = {**cursor.seen, **{f.path: version_tag(f) for f in listed}}
    nxt = DeliveryCursor(after=after, newest_day=cursor.newest_day, seen=seen)
    return Scan(start=start, listed=listed, new=new, cursor=nxt, truncated=len(raw) >= limit)


def version_tag(f: StoredFile) -> str:
    """A short digest of the file's version: the cursor holds one per key in the window."""
    return hashlib.sha256(f.version.encode()).hexdigest()[:12]


def _hidden(path: str) -> bool:
    """Temporary and marker files (``.tmp-…``, ``_SUCCESS``) are not deliveries; dump skips them too."""
    return path.rsplit("/", 1)[-1].startswith((".", "_"))


def _path(f: StoredFile) -> str:
    return f.path


def delivery_day(prefix: str, path: str) -> str | None:
    """The ``YYYY-MM-DD`` folder right under the prefix, or None when the key has none."""
    first = path[len(prefix) + 1 :].split("/", 1)[0]
    if not _DAY.match(first):
        return None
    try:
        dt.date.fromisoformat(first)
    except ValueError:
        return None
    return first


def run_key(table: str, start: dt.date, end: dt.date, files: list[StoredFile]) -> str:
    """Stable for the same delivered versions, so a retried tick does not launch a second run."""
    digest = hashlib.sha256("\n".join(f"{f.path}\t{f.version}" for f in files).encode()).hexdigest()
    return f"{table}:{start}..{end}:{digest[:16]}"


def build_new_data_sensor(
    loaded: LoadedConfig, table: str, job_name: str, running: bool, derived: Sequence[DerivedTable] = ()
) -> dg.SensorDefinition:
    config = loaded.config
    auto = config.automation
    prefix = config.tables[table].source.prefix.strip("/")
    partitions = daily_partitions(config.general)
    general = config.general
    bounds = f"{general.start_date}..{general.end_date or 'yesterday'}"

    @dg.sensor(
        name=f"new_data_{table}",
        job_name=job_name,
        minimum_interval_seconds=auto.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Requests one run per contiguous block of days with new or rewritten files under "
            f"<input_path>/{prefix}/<YYYY-MM-DD>/."
        ),
    )
    def new_data(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        store = Lake(loaded).landing
        cursor = DeliveryCursor.parse(context.cursor)
        result = scan(store, prefix, cursor, auto.rewrite_lookback_days, auto.sensor_max_keys)
        nxt = result.cursor

        by_day: dict[dt.date, list[StoredFile]] = defaultdict(list)
        no_day: list[str] = []
        outside: list[str] = []
        valid: dict[str, bool] = {}
        for f in result.new:
            day = delivery_day(prefix, f.path)
            if day is None:
                no_day.append(f.path)
            else:
                if day not in valid:
                    valid[day] = partitions.has_partition_key(day)
                if valid[day]:
                    by_day[dt.date.fromisoformat(day)].append(f)
                else:
                    outside.append(f.path)
        if no_day:
            context.log.warning(
                f"{table}: skipped {len(no_day)} key(s) with no YYYY-MM-DD folder under "
                f"{store.uri(prefix)}/, e.g. {no_day[:_EXAMPLES]}; upstream must drop files at "
                f"{prefix}/<YYYY-MM-DD>/<file>"
            )
        if outside:
            context.log.warning(
                f"{table}: skipped {len(outside)} key(s) whose day is not a partition ({bounds}; a day "
                f"becomes one once it is over), e.g. {outside[:_EXAMPLES]}; the nightly schedule picks up "
                "days that complete later"
            )

        if by_day:
            newest = max(by_day).isoformat()
            nxt.newest_day = max(newest, cursor.newest_day or newest)
        if window := nxt.window_start(prefix, auto.rewrite_lookback_days):
            nxt.seen = {k: v for k, v in nxt.seen.items() if k > window}

        ranges = day_ranges(by_day, config.processing.max_partitions)
        requests = []
        for start, end in ranges:
            files = sorted((f for d, fs in by_day.items() if start <= d <= end for f in fs), key=_path)
            key = run_key(table, start, end, files)
            builds = ready_derived(context.instance, config, derived, table, start, end)
            requests.append(
                range_run_request(table, start, end, key, "new-data", table_assets(table), builds)
            )
        more = "; more keys are waiting, the next tick continues" if result.truncated else ""
        summary = (
            f"{table}: listed {len(result.listed)} key(s) after {result.start or prefix + '/'}, "
            f"{len(result.new)} new or rewritten{more}"
        )
        if not requests:
            return dg.SensorResult(skip_reason=summary, cursor=nxt.dump())
        context.log.info(f"{summary}; requesting {len(requests)} run(s): {describe_ranges(ranges)}")
        return dg.SensorResult(run_requests=requests, cursor=nxt.dump())

    return new_data
