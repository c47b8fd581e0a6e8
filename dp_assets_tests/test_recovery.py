"""A crashed run never blocks the runs after it: `dp run` killed with SIGKILL (its whole process group,
Spark included) during the load leaves a claimed `spark` slot, a STARTED run, the table's lock and a
half-written version folder; the next `dp run` releases the slot and the lock, names what it
released, and publishes exactly what a clean run publishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dp_assets.lake import published_folders
from dp_assets.liveness import LOCK_NAME, Holder, read_holder, table_lock
from dp_assets_tests.helpers import demo_lake, read_table, unreferenced_versions
from spark_jobs.storage import LocalStore

DP = str(Path(sys.executable).with_name("dp"))
DAY = "2013-01-02"


def dp_run(
    home: Path, start: str = DAY, end: str = DAY, dagster_home: Path | None = None, **popen: object
) -> subprocess.Popen[str]:
    env = {**os.environ, "DP_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)  # dp's default instance under DP_HOME, unless named
    if dagster_home:
        dagster_home.mkdir(parents=True, exist_ok=True)
        env["DAGSTER_HOME"] = str(dagster_home)
    command = [DP, "run", "--start", start, "--end", end, "--tables", "flights"]
    return subprocess.Popen(
        command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen
    )


def wait_for(found: object, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not found():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def row_hashes(home: Path) -> list[str]:
    folder = published_folders(home / "lake" / "flights")[DAY]
    return sorted(pq.read_table(folder, columns=["row_hash"])["row_hash"].to_pylist())


def test_next_dp_run_releases_a_killed_run_and_equals_a_clean_run(tmp_path: Path) -> None:
    home, clean = tmp_path / "home", tmp_path / "clean"
    for h in (home, clean):
        demo_lake(h, DAY, DAY)
    table = home / "lake" / "flights"

    killed = dp_run(home, start_new_session=True)  # its own process group: dp, spark-submit, the JVM
    wait_for(lambda: (table / "_versions").is_dir(), "the load to start writing its version")
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    holder = read_holder(LocalStore(str(home / "lake")), f"flights/{LOCK_NAME}")
    assert holder is not None  # the dead run still holds the table's lock
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
        (dead,) = instance.get_runs()
        assert dead.status == dg.DagsterRunStatus.STARTED and dead.run_id == holder.run_id
        assert dead.run_id in instance.event_log_storage.get_concurrency_run_ids()  # its slot is claimed

    after = dp_run(home)
    out, err = after.communicate(timeout=600)
    assert after.returncode == 0, (out[-2000:], err[-3000:])
    assert f"released the spark slot of run {dead.run_id}, dead since" in out
    assert f"its process {holder.pid} on {holder.host} is gone" in out
    (line,) = [ln.split() for ln in out.splitlines() if ln.startswith("flights ")]
    assert line[-2:] == ["all", "passed"]
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
        statuses = {r.run_id: r.status for r in instance.get_runs()}
        assert statuses[dead.run_id] == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_run_ids() == set()
        broke = [
            e.message
            for e in instance.all_logs(next(r for r in statuses if r != dead.run_id))
            if "broke the lock" in e.message
        ]
        assert broke and dead.run_id in broke[0] and f"its process {holder.pid}" in broke[0]

    reference = dp_run(clean)
    assert reference.communicate(timeout=600) and reference.returncode == 0
    assert row_hashes(home) == row_hashes(clean)
    leftovers = [p for name in ("_publish", LOCK_NAME) for p in table.glob(name + "*")]
    assert [p for p in leftovers if p.is_file() or any(p.iterdir())] == []
    assert unreferenced_versions(table) == []  # the killed run's half-written version is deleted


def test_two_instances_loading_overlapping_days_serialize_on_the_lake_lock(tmp_path: Path) -> None:
    """Two `dp run`s on different Dagster instances (so no shared pool or run queue), one lake,
    overlapping days: the table's lock makes them take turns; both succeed and no day is lost."""
    home = tmp_path / "home"
    delivered = demo_lake(home, "2013-01-01", "2013-01-03")[1]
    first = dp_run(home, "2013-01-01", "2013-01-02", dagster_home=tmp_path / "instance-a")
    second = dp_run(home, "2013-01-02", "2013-01-03", dagster_home=tmp_path / "instance-b")
    errors = []
    for run in (first, second):
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, (out[-2000:], err[-3000:])
        errors.append(out + err)  # warnings are printed with the progress, on stdout
    assert any("table flights: waiting for run" in e for e in errors)  # one took its turn, and said so
    days = read_table(home / "lake" / "flights").to_table(columns=["flight_date"])["flight_date"]
    counts = pc.value_counts(days.cast("string")).to_pylist()
    assert {c["values"]: c["counts"] for c in counts} == delivered
    assert not (home / "lake" / "flights" / LOCK_NAME).exists()


def test_a_live_holder_is_waited_for_then_named(tmp_path: Path) -> None:
    """A lock held by a live run is never broken: the next writer waits, then fails naming it."""
    store = LocalStore(str(tmp_path))
    with dg.instance_for_test() as instance:
        with table_lock(store, "flights", "run-a", instance, print, wait_seconds=5):
            with (
                pytest.raises(dg.Failure) as refused,
                table_lock(store, "flights", "run-b", instance, print, wait_seconds=0.5, poll_seconds=0.1),
            ):
                pass
            assert "table flights is being written by run run-a (pid" in str(refused.value)
            assert f"delete {tmp_path}/flights/{LOCK_NAME}" in str(refused.value)
        assert read_holder(store, f"flights/{LOCK_NAME}") is None  # released at the end


def test_dead_holders_are_broken_and_named(tmp_path: Path) -> None:
    """Provably dead: its process on this host is gone, or its run ended on this instance."""
    store = LocalStore(str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me = Holder.me("unused")

    @dg.asset
    def finished() -> None:
        return None

    with dg.instance_for_test() as instance:
        ended = dg.materialize([finished], instance=instance).run_id
        holders = {
            "its process": Holder("run-killed", me.host, gone.pid, "", gone.pid, me.since),
            "its run ended SUCCESS": Holder(ended, "another-host", 1, "", 1, me.since),
        }
        for why, holder in holders.items():
            store.create_exclusive(f"flights/{LOCK_NAME}", json.dumps(asdict(holder)).encode())
            warnings: list[str] = []
            with table_lock(store, "flights", "run-next", instance, warnings.append, wait_seconds=5):
                assert read_holder(store, f"flights/{LOCK_NAME}").run_id == "run-next"  # type: ignore[union-attr]
            (warning,) = warnings
            assert (
                warning.startswith(f"table flights: broke the lock of run {holder.run_id}") and why in warning
            )


def test_only_the_waiter_that_claims_the_break_breaks_a_dead_lock(tmp_path: Path) -> None:
    """Two waiters that read the same dead holder: the one whose break marker exists already lost
    the race, and must not delete the lock the winner is about to take."""
    store = LocalStore(str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me = Holder.me("unused")
    dead = Holder("run-killed", me.host, gone.pid, "", gone.pid, me.since)
    store.create_exclusive(f"flights/{LOCK_NAME}", json.dumps(asdict(dead)).encode())
    store.create_exclusive(f"flights/{LOCK_NAME}.broken-run-killed", b"run-winner")  # the winner's claim
    warnings: list[str] = []
    with (
        dg.instance_for_test() as instance,
        pytest.raises(dg.Failure, match="being written by run run-killed"),
        table_lock(store, "flights", "run-late", instance, warnings.append, 0.3, poll_seconds=0.1),
    ):
        pass
    assert read_holder(store, f"flights/{LOCK_NAME}") == dead  # left for the winner
    assert not any("broke the lock" in w for w in warnings)
