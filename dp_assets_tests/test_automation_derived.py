"""Derived tables run unattended: a table's new-data or nightly run builds the derived tables that read
it once everything else they read has those days (blocking checks passed), and each derived table's
own nightly schedule catches up the days whose upstream completed later, never a day still waiting."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest

from dp_assets.automation.runs import DERIVED_TAG, RANGE_END, RANGE_START, TABLE_TAG, table_assets
from dp_assets.config.loader import LoadedConfig
from dp_assets.lake import Lake
from dp_assets_tests.automation_support import (
    config_with,
    fail,
    materialize,
    queued_run,
    ranges,
    schedule,
    sensor,
)
from dp_assets_tests.conftest import PACKAGED_CONFIG

DERIVED = "daily_carrier_delays"  # reads flights and airlines
UTC = dt.UTC


@pytest.fixture
def loaded(isolated_home: Path) -> LoadedConfig:
    """The packaged config with its derived table (its SQL beside the config), partitions from 2024."""
    shutil.copytree(PACKAGED_CONFIG.parent / "transforms", isolated_home / "transforms")
    section = f'[derived.{DERIVED}]\npartition_column = "flight_date"\n'
    return config_with(isolated_home, {"start_date": "2024-01-01", "end_date": None}, section)


def sensor_tick(loaded: LoadedConfig, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    context = dg.build_sensor_context(instance=instance)
    return list(sensor(loaded, "new_data_flights").evaluate_tick(context).run_requests or [])


def nightly(
    loaded: LoadedConfig, instance: dg.DagsterInstance, table: str
) -> tuple[list[dg.RunRequest], str]:
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=dt.datetime(2024, 3, 10, 2, tzinfo=UTC)
    )
    data = schedule(loaded, f"nightly_{table}").evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message or ""


def deliver_flights(loaded: LoadedConfig, *days: str) -> None:
    for day in days:
        with Lake(loaded).landing.open_write(f"flights/{day}/flights_{day}.csv") as f:
            f.write(b"a,b\n1,2\n")


def test_a_new_data_run_builds_the_derived_table_only_once_its_other_upstream_has_the_days(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    deliver_flights(loaded, "2024-03-01", "2024-03-02")
    (alone,) = sensor_tick(loaded, instance)  # airlines has none of the days yet: flights alone
    assert alone.asset_selection == table_assets("flights") and DERIVED_TAG not in alone.tags

    materialize(instance, "2024-03-01", "2024-03-02", table="airlines")
    (together,) = sensor_tick(loaded, instance)  # a fresh cursor: the same delivery, asked again
    assert together.asset_selection == [*table_assets("flights"), dg.AssetKey(DERIVED)]
    assert together.tags[DERIVED_TAG] == DERIVED and together.tags[TABLE_TAG] == "flights"

    fail(instance, "2024-03-02", table="airlines")  # its rerun was held back by a blocking check
    (held,) = sensor_tick(loaded, instance)
    assert held.asset_selection == table_assets("flights")


def test_a_derived_tables_nightly_catches_up_days_whose_upstream_completed_later(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    # Flights has 03-01..03-09, airlines lacks 03-08 and 03-09, and a queued flights run already
    # builds the derived table for 03-05..03-06. A derived table is computed from the lake, so the
    # source's retention (7 days) does not hold it back from 03-01 and 03-02.
    materialize(instance, "2024-03-01", "2024-03-09", table="flights")
    materialize(instance, "2024-03-01", "2024-03-07", table="airlines")
    queued_run(
        instance,
        {TABLE_TAG: "flights", DERIVED_TAG: DERIVED, RANGE_START: "2024-03-05", RANGE_END: "2024-03-06"},
    )
    requests, _ = nightly(loaded, instance, DERIVED)
    assert ranges(requests) == [("2024-03-01", "2024-03-04"), ("2024-03-07", "2024-03-07")]
    assert all(r.asset_selection == [dg.AssetKey(DERIVED)] and r.tags[TABLE_TAG] == DERIVED for r in requests)

    materialize(instance, "2024-03-01", "2024-03-07", table=DERIVED)
    requests, skipped = nightly(loaded, instance, DERIVED)
    assert requests == [] and "2024-03-08..2024-03-09 waiting for upstream" in skipped
    assert "past retention" not in skipped


def test_a_snapshot_table_never_reloads_a_loaded_day_to_fill_a_gap(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    """airlines is a PostgreSQL table without date_column: a day's partition is the snapshot taken
    that day, so a rerun of a loaded day would replace its history with today's rows."""
    materialize(instance, "2024-03-01", "2024-03-09", table="airlines")
    fail(instance, "2024-03-04", table="airlines")
    fail(instance, "2024-03-06", table="airlines")
    requests, _ = nightly(loaded, instance, "airlines")
    assert ranges(requests) == [("2024-03-04", "2024-03-04"), ("2024-03-06", "2024-03-06")]


def test_a_derived_table_another_run_already_builds_is_left_to_it(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    materialize(instance, "2024-03-01", "2024-03-09", table="airlines")
    queued_run(instance, {TABLE_TAG: DERIVED, RANGE_START: "2024-03-02", RANGE_END: "2024-03-02"})
    deliver_flights(loaded, "2024-03-01", "2024-03-02")
    (request,) = sensor_tick(loaded, instance)
    assert request.asset_selection == table_assets("flights")  # no second writer of it at once


def test_a_tables_nightly_run_builds_the_derived_table_when_the_rest_is_there(
    loaded: LoadedConfig, instance: dg.DagsterInstance
) -> None:
    materialize(instance, "2024-03-01", "2024-03-08", table="flights")
    materialize(instance, "2024-03-01", "2024-03-09", table="airlines")
    (request,) = nightly(loaded, instance, "flights")[0]
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2024-03-09", "2024-03-09")
    assert request.asset_selection == [*table_assets("flights"), dg.AssetKey(DERIVED)]
