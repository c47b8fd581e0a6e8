"""Configs and lookups shared by the automation tests (sensors, schedules, notifications)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test

from dp_assets.automation.runs import RANGE_END, RANGE_START
from dp_assets.config.loader import LoadedConfig, load_config_from
from dp_assets.definitions import build_definitions
from dp_assets_tests.conftest import packaged_text


def config_with(home: Path, values: dict[str, str | None] | None = None, append: str = "") -> LoadedConfig:
    """The packaged config with keys it sets replaced (TOML literals; None drops the key) and
    sections appended, written to a file and loaded through the real loader."""
    text = packaged_text()
    for key, value in (values or {}).items():
        line = "" if value is None else f"{key} = {value}\n"
        text, n = re.subn(rf"(?m)^{key} = .*\n", line, text, count=1)
        assert n == 1, f"the packaged config does not set {key}"
    path = home / "config.toml"
    path.write_text(text + "\n" + append)
    return load_config_from(str(path), home=home)


def queued_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    """A run waiting in the run queue, as a sensor or schedule tick leaves it for the daemon."""
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("dp"), "__repository__"),
        job_name="pipeline",
    )
    return create_run_for_test(
        instance, job_name="pipeline", status=dg.DagsterRunStatus.QUEUED, tags=tags, remote_job_origin=origin
    )


def sensor(loaded: LoadedConfig, name: str) -> dg.SensorDefinition:
    return build_definitions(loaded).resolve_sensor_def(name)


def schedule(loaded: LoadedConfig, name: str) -> dg.ScheduleDefinition:
    return build_definitions(loaded).resolve_schedule_def(name)


def ranges(requests: list[dg.RunRequest]) -> list[tuple[str, str]]:
    return [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests]


def materialize(instance: dg.DagsterInstance, first: str, last: str, table: str = "flights") -> None:
    """Record materializations as a finished run would, without running Spark."""
    day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    while day <= end:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=table, partition=str(day)))
        day += dt.timedelta(days=1)


def fail(instance: dg.DagsterInstance, day: str, table: str = "flights") -> None:
    """A real run of the table's asset that fails for ``day``, as a held-back load does."""

    @dg.asset(name=table, partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"))
    def failing() -> None:
        raise RuntimeError("held back")

    assert not dg.materialize([failing], partition_key=day, instance=instance, raise_on_error=False).success
