"""Who is writing, and whether they are still alive: the lake's per-table lock, and the release of
runs that died without ending.

A run killed with SIGKILL (or whose machine died) never reports its end: Dagster keeps it STARTED and
keeps its ``spark`` pool slot claimed, and every later run on the instance waits on that slot. And a
Spark job killed mid-publish leaves its staging and journal in the table folder. So:

- every run ``dp`` starts carries its owner (host, pid, the process's start time) in its tags, and
  before a new run starts, runs whose owner process is provably gone are marked failed and their
  slots freed, each named (``release_dead_runs``);
- a Spark job writes a table only while holding that table's lock in the lake, created exclusively
  (O_EXCL locally, ``If-None-Match: *`` on S3), so two runs never write one table at once, whatever
  instance, host or launcher they come from. A lock whose holder provably died (its run ended, or its
  process on this host is gone) is broken and named; the new holder's job then finishes or discards
  what the dead one left (``Publisher.recover`` in ``spark_jobs``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
from botocore.exceptions import ClientError

from dp_assets.config.loader import LoadedConfig
from dp_assets.lake import Lake
from spark_jobs.storage import Store

HOST_TAG, PID_TAG, PID_STARTED_TAG = "dp/host", "dp/pid", "dp/pid_started"
LOCK_NAME = "_lock.json"
IN_PROGRESS = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None when it does not
    exist: a pid reused by a later process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def this_host() -> str:
    """This host and pid namespace: two containers sharing a hostname do not share pids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}" if namespace else socket.gethostname()


def owner_tags() -> dict[str, str]:
    """Tags naming this process as a run's owner, so a later run can prove it died."""
    pid = os.getpid()
    return {HOST_TAG: this_host(), PID_TAG: str(pid), PID_STARTED_TAG: process_started(pid) or ""}


def owner_gone(host: str, pid: int, started: str) -> bool:
    """True only when the owner is provably dead: on this host, /proc readable, and its pid gone or
    reused. Without /proc (not Linux) nothing is provable, and nothing is released."""
    if host != this_host() or process_started(os.getpid()) is None:
        return False
    now = process_started(pid)
    return now is None or (bool(started) and now != started)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_event_time(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, ascending=False, limit=1).records
    if not records:
        return "unknown"
    when = dt.datetime.fromtimestamp(records[0].event_log_entry.timestamp, dt.UTC)
    return when.isoformat(timespec="seconds")


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every in-progress run whose owning process is provably gone, and free its pool
    slots; one line per run saying what was released and why."""
    released = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(IN_PROGRESS))):
        tags = run.tags
        if PID_TAG not in tags or not owner_gone(tags[HOST_TAG], int(tags[PID_TAG]), tags[PID_STARTED_TAG]):
            continue
        since = last_event_time(instance, run.run_id)
        why = f"its process {tags[PID_TAG]} on {tags[HOST_TAG]} is gone"
        instance.report_run_failed(run, f"dp: {why}; marked failed by a later run")
        holds_slots = run.run_id in instance.event_log_storage.get_concurrency_run_ids()
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        what = "released the spark slot of" if holds_slots else "marked failed"
        released.append(f"{what} run {run.run_id}, dead since {since} ({why})")
    return released


@dataclass(frozen=True)
class Holder:
    """Who holds a table's lock."""

    run_id: str
    host: str
    pid: int
    pid_started: str
    pgid: int  # the process group: spark-submit and its JVM run in it when dp leads it
    since: str

    @classmethod
    def me(cls, run_id: str) -> Holder:
        tags = owner_tags()
        pid = int(tags[PID_TAG])
        return cls(run_id, tags[HOST_TAG], pid, tags[PID_STARTED_TAG], os.getpgid(0), _now())

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}) since {self.since}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def why_dead(holder: Holder, instance: dg.DagsterInstance) -> str | None:
    """Why a holder is provably dead, or None while it may be alive. On this host its processes
    decide: the owner is gone and, when it led its process group (a `dp run` from a shell), no
    process of the group is left (an orphaned spark-submit may still be writing). Elsewhere, its run
    must have ended on this instance."""
    if holder.host == this_host():
        if not owner_gone(holder.host, holder.pid, holder.pid_started):
            return None
        if holder.pgid == holder.pid and group_alive(holder.pgid):
            return None
        return f"its process {holder.pid} on {holder.host} is gone"
    run = instance.get_run_by_id(holder.run_id)
    if run is not None and run.is_finished:
        return f"its run ended {run.status.value}"
    return None


@contextmanager
def table_lock(
    store: Store,
    table: str,
    run_id: str,
    instance: dg.DagsterInstance,
    warn: Callable[[str], None],
    wait_seconds: float,
    poll_seconds: float = 2.0,
) -> Iterator[None]:
    """Hold ``<table>/_lock.json`` for the block: wait while a live run holds it, break it when its
    holder provably died (saying whose and why), fail after ``wait_seconds`` naming the holder."""
    path = f"{table}/{LOCK_NAME}"
    me = Holder.me(run_id)
    deadline = time.monotonic() + wait_seconds
    waited = False
    breaks: list[str] = []
    while not store.create_exclusive(path, json.dumps(asdict(me)).encode()):
        holder = read_holder(store, path)
        if holder is None:  # released between the two calls
            continue
        why = why_dead(holder, instance)
        # One run breaks a dead holder's lock: the one that creates its break marker. Another waiter
        # that read the same dead holder must not delete the lock the breaker has since taken.
        broken = f"{path}.broken-{holder.run_id}"
        if why is not None and store.create_exclusive(broken, me.run_id.encode()):
            warn(f"table {table}: broke the lock of {holder.describe()}: {why}")
            store.delete(path)
            breaks.append(broken)
            continue
        if not waited:
            warn(f"table {table}: waiting for {holder.describe()} to finish writing it")
            waited = True
        if time.monotonic() >= deadline:
            raise dg.Failure(
                f"table {table} is being written by {holder.describe()}; waited {wait_seconds:g} s. "
                f"If that run is dead, delete {store.uri(path)} and run again."
            )
        time.sleep(poll_seconds)
    try:
        yield
    finally:
        holder = read_holder(store, path)
        if holder is not None and holder.run_id == run_id:  # never release a lock another run took
            store.delete(path)
        for marker in breaks:  # any waiter that raced for them has long re-read the lock
            store.delete(marker)


def read_holder(store: Store, path: str) -> Holder | None:
    """The lock's holder, or None when there is no lock (a lock is created whole, exclusively)."""
    try:
        with store.open_read(path) as f:
            return Holder(**json.load(f))
    except FileNotFoundError:
        return None
    except ClientError as e:  # S3
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


@contextmanager
def table_writer(context: dg.AssetExecutionContext, loaded: LoadedConfig, table: str) -> Iterator[None]:
    """The table's lock in the lake for the duration of a step that writes it."""
    wait = loaded.config.processing.table_lock_wait_seconds
    with table_lock(Lake(loaded).store, table, context.run_id, context.instance, context.log.warning, wait):
        yield
