"""New-data sensor: runs requested once per delivery, rewrites seen again, and a tick that lists only
what is new — on the local lake and on S3 (a moto server over HTTP), ticked through Dagster's API."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import dagster as dg
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from dp_assets.automation.runs import TABLE_TAG, TRIGGER_TAG, table_assets
from dp_assets.automation.sensors import DeliveryCursor
from dp_assets.config.loader import LoadedConfig, load_config_from
from dp_assets.lake import Lake
from dp_assets_tests.automation_support import config_with, ranges, sensor

SENSOR = "new_data_flights"


def deliver(loaded: LoadedConfig, path: str, body: bytes = b"a,b\n1,2\n") -> None:
    with Lake(loaded).landing.open_write(path) as f:
        f.write(body)


def tick(loaded: LoadedConfig, cursor: str | None) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """One evaluation as the daemon does it: fresh definitions, the stored cursor, a real instance."""
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor)
    data = sensor(loaded, SENSOR).evaluate_tick(context)
    return list(data.run_requests or []), data.cursor, data.skip_message


@pytest.fixture(params=["local", "s3"])
def landing(request: pytest.FixtureRequest, isolated_home: Path) -> LoadedConfig:
    if request.param == "local":
        return config_with(isolated_home)
    request.getfixturevalue("aws")
    bucket = f"landing-{hashlib.sha256(request.node.name.encode()).hexdigest()[:16]}"  # one per test
    boto3.client("s3").create_bucket(Bucket=bucket)
    return config_with(isolated_home, {"input_path": f'"s3://{bucket}/landing"'})


def test_deliveries_run_once_as_one_range_and_the_cursor_survives_a_restart(landing: LoadedConfig) -> None:
    for day in ("2013-01-01", "2013-01-02", "2013-01-03"):
        deliver(landing, f"flights/{day}/flights_{day}.csv")

    requests, cursor, _ = tick(landing, None)
    assert ranges(requests) == [("2013-01-01", "2013-01-03")]  # three days arrived together: one run
    (request,) = requests
    assert request.tags[TABLE_TAG] == "flights" and request.tags[TRIGGER_TAG] == "new-data"
    assert request.asset_selection == table_assets("flights")
    assert request.run_key and request.run_key.startswith("flights:2013-01-01..2013-01-03:")

    again, cursor_again, skipped = tick(landing, cursor)
    assert again == [] and skipped and "0 new" in skipped

    restarted = load_config_from(landing.provenance.uri, home=landing.dp_home)  # a new code server
    after_restart, _, _ = tick(restarted, cursor_again)
    assert after_restart == []


def test_a_rewritten_key_is_seen_again_with_a_new_run_key(landing: LoadedConfig) -> None:
    for day in ("2013-01-01", "2013-01-02", "2013-01-03"):
        deliver(landing, f"flights/{day}/flights_{day}.csv")
    (first,), cursor, _ = tick(landing, None)

    deliver(landing, "flights/2013-01-02/flights_2013-01-02.csv", b"a,b\n1,2\n3,4\n")  # corrected
    deliver(landing, "flights/2013-01-04/flights_2013-01-04.csv")
    deliver(landing, "flights/2013-01-06/flights_2013-01-06.csv")
    requests, cursor, _ = tick(landing, cursor)
    # 01-02 was rewritten and 01-04 is new, but 01-03 is unchanged: never a run over a day with
    # nothing new, so 01-02 and 01-04 are separate runs; 01-06 is its own block too.
    assert ranges(requests) == [
        ("2013-01-02", "2013-01-02"),
        ("2013-01-04", "2013-01-04"),
        ("2013-01-06", "2013-01-06"),
    ]
    assert requests[0].run_key != first.run_key

    # The cursor keeps versions for rewrite_lookback_days (3) before the newest day (01-06), so a
    # rewrite of 01-03 is seen; 01-02 is outside the window and is not (re-run it with `dp run`).
    deliver(landing, "flights/2013-01-03/flights_2013-01-03.csv", b"a,b\n5,6\n7,8\n")
    deliver(landing, "flights/2013-01-02/flights_2013-01-02.csv", b"a,b\n9,9\n")
    requests, cursor, _ = tick(landing, cursor)
    assert ranges(requests) == [("2013-01-03", "2013-01-03")]
    assert set(DeliveryCursor.parse(cursor).seen) == {
        f"flights/{d}/flights_{d}.csv" for d in ("2013-01-03", "2013-01-04", "2013-01-06")
    }


def test_same_versions_give_the_same_run_key_so_a_retried_tick_launches_nothing_new(
    landing: LoadedConfig,
) -> None:
    deliver(landing, "flights/2013-03-01/a.csv")
    deliver(landing, "flights/2013-03-01/b.csv")
    (a,), _, _ = tick(landing, None)
    (b,), _, _ = tick(landing, None)  # the first tick's cursor was never stored (e.g. a crash)
    assert a.run_key == b.run_key


def test_keys_outside_the_layout_or_the_partitions_are_skipped_and_logged_once(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = config_with(isolated_home)
    for path in (
        "flights/README.txt",
        "flights/2012-12-31/early.csv",  # before start_date
        "flights/2014-01-01/late.csv",  # after end_date
        "flights/2013-02-30/bad-date.csv",
        "flights/2013-01-02/.tmp-upload",  # a half-written file: silently ignored
        "flights/2013-01-02/_SUCCESS",
        "flights/2013-01-02/good.csv",
    ):
        deliver(loaded, path)

    requests, cursor, _ = tick(loaded, None)
    log = capsys.readouterr().err  # the sensor's context.log, as the daemon would capture it
    assert ranges(requests) == [("2013-01-02", "2013-01-02")]
    assert "WARNING - flights: skipped 2 key(s) with no YYYY-MM-DD folder" in log
    assert "flights/README.txt" in log and "flights/2013-02-30/bad-date.csv" in log
    assert "skipped 2 key(s) whose day is not a partition (2013-01-01..2013-12-31" in log
    assert "flights/2012-12-31/early.csv" in log and "flights/2014-01-01/late.csv" in log
    assert ".tmp-upload" not in log and "_SUCCESS" not in log

    requests, _, _ = tick(loaded, cursor)
    assert requests == [] and "skipped" not in capsys.readouterr().err


def test_a_backlog_larger_than_a_tick_is_worked_off_without_repeats(isolated_home: Path) -> None:
    loaded = config_with(isolated_home, append="[automation]\nsensor_max_keys = 2\n")
    days = [dt.date(2013, 5, 1) + dt.timedelta(days=i) for i in range(5)]
    for day in days:
        deliver(loaded, f"flights/{day}/f.csv")

    cursor, seen_ranges, ticks = None, [], 0
    while True:
        requests, cursor, skipped = tick(loaded, cursor)
        ticks += 1
        if skipped:
            break
        seen_ranges += ranges(requests)
    assert seen_ranges == [
        ("2013-05-01", "2013-05-02"),
        ("2013-05-03", "2013-05-04"),
        ("2013-05-05", "2013-05-05"),
    ]
    assert ticks == 4


DAYS, FILES_PER_DAY = 1000, 100  # 100,000 keys: 2020-01-01 .. 2022-09-26


def test_with_100k_keys_a_tick_lists_only_what_is_new(
    aws: str, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = "landing-scale"
    boto3.client("s3").create_bucket(Bucket=bucket)
    loaded = config_with(
        isolated_home,
        {"input_path": f'"s3://{bucket}/landing"', "start_date": "2020-01-01", "end_date": "2023-12-31"},
    )
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(DAYS + 2)]
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]  # setup only: the moto server runs in this process

    def put_days(chosen: list[dt.date]) -> None:
        for day in chosen:
            for j in range(FILES_PER_DAY):
                backend.put_object(bucket, f"landing/flights/{day}/part-{j:05d}.csv", b"x")

    # The sensor has been running: its last tick saw the newest days. (Working off 100,000 keys
    # from an empty cursor takes ~100 list requests against moto, ~80 s; the backlog test above
    # covers that path on a small scale.)
    began = time.monotonic()
    put_days(days[DAYS - 4 : DAYS])
    (caught_up,), cursor, _ = tick(loaded, None)
    assert ranges([caught_up]) == [(str(days[DAYS - 4]), str(days[DAYS - 1]))]
    # The history before them: S3 lists in key order, whenever the keys were written.
    put_days(days[: DAYS - 4])
    created = time.monotonic() - began
    assert len(backend.get_bucket(bucket).keys) == DAYS * FILES_PER_DAY

    new = [f"flights/{d}/new-{j}.csv" for d in days[DAYS:] for j in range(5)]
    with ThreadPoolExecutor(4) as pool:  # over HTTP, as upstream drops them
        list(pool.map(lambda path: deliver(loaded, path), new))

    lists: list[str] = []
    boto3.setup_default_session()  # S3Store's client comes from this session and inherits the hook
    boto3.DEFAULT_SESSION.events.register("before-call.s3.ListObjectsV2", lambda **kw: lists.append("l"))
    began = time.monotonic()
    requests, cursor, _ = tick(loaded, cursor)
    elapsed = time.monotonic() - began

    assert ranges(requests) == [(str(days[DAYS]), str(days[DAYS + 1]))]  # only the new days, one run
    assert len(lists) == 1, f"a tick made {len(lists)} list requests"
    assert elapsed < 10  # a couple of seconds on a quiet machine; generous for a loaded CI box
    with capsys.disabled():
        print(
            f"\n100,000 existing keys (setup {created:.1f} s) + 10 new: one sensor tick took "
            f"{elapsed:.2f} s and {len(lists)} S3 list request(s)"
        )
