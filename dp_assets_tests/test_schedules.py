"""Nightly schedule with catch-up: every day whose partition is not materialized (never loaded, or
failed since), read from Dagster's own partition status, is requested in as few runs as the
partition limit allows; days past the source's retention are named, not requested."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from dp_assets.automation.runs import RANGE_END, RANGE_START, TABLE_TAG, TRIGGER_TAG, table_assets
from dp_assets.config.loader import LoadedConfig
from dp_assets_tests.automation_support import config_with, fail, materialize, queued_run, ranges, schedule

SCHEDULE = "nightly_flights"
UTC = dt.UTC


@pytest.fixture
def loaded(isolated_home: Path) -> LoadedConfig:
    return config_with(isolated_home, {"start_date": "2024-01-01", "end_date": None})


def tick(
    loaded: LoadedConfig, instance: dg.DagsterInstance, at: dt.datetime
) -> tuple[list[dg.RunRequest], str | None]:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
    data = schedule(loaded, SCHEDULE).evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message


def test_a_three_day_outage_then_one_tick_is_one_run_over_exactly_the_missing_days(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    # Materialized through 03-06; the daemon was down for the 03-08 and 03-09 ticks, back for 03-10.
    materialize(instance, "2024-03-01", "2024-03-06")

    requests, _ = tick(loaded, instance, dt.datetime(2024, 3, 10, 2, tzinfo=UTC))

    assert len(requests) == 1
    (request,) = requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2024-03-07", "2024-03-09")
    assert request.tags[TABLE_TAG] == "flights" and request.tags[TRIGGER_TAG] == "nightly"
    assert request.asset_selection == table_assets("flights")
    assert request.run_key == "flights:2024-03-07..2024-03-09"

    # The catch-up run materialized the gap: the next nights want one day each, then nothing.
    materialize(instance, "2024-03-07", "2024-03-09")
    requests, _ = tick(loaded, instance, dt.datetime(2024, 3, 11, 2, tzinfo=UTC))
    assert ranges(requests) == [("2024-03-10", "2024-03-10")]
    materialize(instance, "2024-03-10", "2024-03-10")
    requests, skipped = tick(loaded, instance, dt.datetime(2024, 3, 11, 2, tzinfo=UTC))
    assert requests == [] and skipped
    # Before 03-01 nothing was ever loaded, and the source no longer holds it: named, not requested.
    assert "last materialized 2024-03-10, 60 day(s) missing; 60 past retention; requesting nothing" in skipped


def test_a_gap_older_than_retention_is_named_and_only_recoverable_days_run(
    loaded: LoadedConfig,
    instance: dg.DagsterInstance,
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    materialize(instance, "2024-02-25", "2024-03-01")

    requests, _ = tick(loaded, instance, dt.datetime(2024, 3, 20, 2, tzinfo=UTC))
    log = capsys.readouterr().err

    # retention_days = 7 on 03-20: the source still holds 03-13..03-19.
    assert ranges(requests) == [("2024-03-13", "2024-03-19")]
    assert (
        "WARNING - flights: 66 missing day(s) cannot be recovered: 2024-01-01..2024-02-24, "
        "2024-03-02..2024-03-12 are older than processing.retention_days = 7"
    ) in log

    longer = config_with(
        isolated_home, {"start_date": "2024-01-01", "end_date": None, "retention_days": "30"}
    )
    requests, _ = tick(longer, instance, dt.datetime(2024, 3, 20, 2, tzinfo=UTC))
    # 02-19..02-24 and 03-02..03-19 are missing: one run spans the 6 loaded days between them.
    assert ranges(requests) == [("2024-02-19", "2024-03-19")]


def test_days_a_queued_run_already_covers_are_left_to_it(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    materialize(instance, "2024-03-01", "2024-03-04")
    queued_run(instance, {TABLE_TAG: "flights", RANGE_START: "2024-03-06", RANGE_END: "2024-03-07"})
    create_run_for_test(  # another table's run does not count
        instance,
        job_name="pipeline",
        status=dg.DagsterRunStatus.STARTED,
        tags={TABLE_TAG: "weather", RANGE_START: "2024-03-05", RANGE_END: "2024-03-09"},
    )
    requests, _ = tick(loaded, instance, dt.datetime(2024, 3, 10, 2, tzinfo=UTC))
    assert ranges(requests) == [("2024-03-05", "2024-03-05"), ("2024-03-08", "2024-03-09")]


def test_a_failed_day_and_a_hole_before_later_successes_are_retried_in_one_run(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    """03-04 loaded, then failed on a rerun (say, held back by its checks), and 03-06 was never
    loaded, while the new-data sensor loaded 03-05 and 03-07..03-09: the next tick retries both, as
    one run."""
    materialize(instance, "2024-03-01", "2024-03-05")
    materialize(instance, "2024-03-07", "2024-03-09")
    fail(instance, "2024-03-04")
    requests, skipped = tick(loaded, instance, dt.datetime(2024, 3, 10, 2, tzinfo=UTC))
    assert ranges(requests) == [("2024-03-04", "2024-03-06")]
    assert requests[0].tags[TRIGGER_TAG] == "nightly"
    materialize(instance, "2024-03-04", "2024-03-06")
    requests, skipped = tick(loaded, instance, dt.datetime(2024, 3, 10, 2, tzinfo=UTC))
    assert requests == [] and skipped and "requesting nothing" in skipped


def test_yesterday_is_counted_in_the_configured_time_zone(
    isolated_home: Path, instance: dg.DagsterInstance
) -> None:
    loaded = config_with(
        isolated_home,
        {"start_date": "2024-01-01", "end_date": None, "env": '"dev"'},
        '[automation]\ntimezone = "America/New_York"\nnightly_cron = "30 1 * * *"\n',
    )
    nightly = schedule(loaded, SCHEDULE)
    assert nightly.execution_timezone == "America/New_York" and nightly.cron_schedule == "30 1 * * *"
    assert nightly.default_status == dg.DefaultScheduleStatus.RUNNING  # deployed envs run on their own
    materialize(instance, "2024-03-01", "2024-03-08")
    # 05:30 UTC on 03-10 is 01:30 on 03-10 in New York (EDT from 03-10 02:00): yesterday is 03-09.
    requests, _ = tick(loaded, instance, dt.datetime(2024, 3, 10, 6, 30, tzinfo=UTC))
    assert ranges(requests) == [("2024-03-09", "2024-03-09")]
    # 03:00 UTC on 03-10 is still 03-09 in New York: yesterday is 03-08, already there.
    requests, skipped = tick(loaded, instance, dt.datetime(2024, 3, 10, 3, tzinfo=UTC))
    assert requests == [] and skipped and "last materialized 2024-03-08" in skipped
    assert "requesting nothing" in skipped


def test_partitions_that_ended_long_ago_are_never_requested(
    isolated_home: Path, instance: dg.DagsterInstance
) -> None:
    loaded = config_with(isolated_home)  # the packaged demo: 2013, nothing materialized
    assert schedule(loaded, SCHEDULE).default_status == dg.DefaultScheduleStatus.STOPPED  # env local
    requests, skipped = tick(loaded, instance, dt.datetime(2024, 3, 10, 2, tzinfo=UTC))
    assert requests == []
    assert skipped and "365 day(s) missing; 365 past retention; requesting nothing" in skipped
