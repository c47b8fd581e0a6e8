"""The production instance file is valid Dagster instance config, and its run queue really admits
one run per table: the daemon's own dequeue loop over the runs our sensors and schedules tag."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from dp_assets.automation.runs import TABLE_TAG, range_run_request, table_assets
from dp_assets.event_log import RECENT_RUNS, LocalEventLogStorage
from dp_assets_tests.automation_support import queued_run

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PG_ENV = {
    "DAGSTER_PG_URL": "postgresql+psycopg2://dagster:not-a-real-password@db.internal:5432/dagster?sslmode=require"
}


def prod_config(monkeypatch: pytest.MonkeyPatch) -> Mapping[str, Any]:
    """deploy/dagster.prod.yaml, validated by Dagster's instance config loader."""
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(DEPLOY), "dagster.prod.yaml")
    return config


def test_production_instance_config_validates_against_dagsters_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = prod_config(monkeypatch)
    assert set(config["storage"]) == {"postgres"}
    assert config["storage"]["postgres"] == {"postgres_url": {"env": "DAGSTER_PG_URL"}}  # no secret here
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    (limit,) = coordinator["config"]["tag_concurrency_limits"]
    assert limit == {"key": TABLE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    local, _ = dagster_instance_config(str(DEPLOY.parent), "dagster.yaml")  # local stays SQLite
    assert "storage" not in local and "run_coordinator" not in local


def test_the_run_queue_never_starts_two_runs_for_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {
        "run_coordinator": prod_config(monkeypatch)["run_coordinator"],
        "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"},
    }

    def tags(table: str, day: int) -> dict[str, str]:
        """What a sensor or schedule tick asks for."""
        d = dt.date(2024, 3, day)
        return dict(range_run_request(table, d, d, f"{table}:{d}", "nightly", table_assets(table)).tags)

    with (
        dg.instance_for_test(overrides=overrides) as instance,
        create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace,
    ):
        first = queued_run(instance, tags("flights", 1))
        second = queued_run(instance, tags("flights", 2))
        other = queued_run(instance, tags("weather", 1))
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

        list(daemon.run_iteration(workspace))
        launched = {r.run_id for r in instance.run_launcher.queue()}
        assert launched == {first.run_id, other.run_id}  # weather runs beside flights, not two flights
        assert instance.get_run_by_id(second.run_id).status == dg.DagsterRunStatus.QUEUED

        list(daemon.run_iteration(workspace))
        assert instance.get_run_by_id(second.run_id).status == dg.DagsterRunStatus.QUEUED

        instance.report_run_failed(instance.get_run_by_id(first.run_id))  # the first flights run ends
        list(daemon.run_iteration(workspace))
        assert second.run_id in {r.run_id for r in instance.run_launcher.queue()}


def test_the_local_instance_keeps_dagsters_event_log_with_an_engine_per_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packaged dagster.yaml stores events through ``LocalEventLogStorage``: in Dagster's own files
    and place, which Dagster's own storage reads back, partitions and all, with the engines it keeps
    bounded (the index's and a few runs')."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((Path(__file__).resolve().parent.parent / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    days = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-08")

    @dg.asset(partitions_def=days)
    def daily() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"rows": 1})

    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, LocalEventLogStorage)
        for day in days.get_partition_keys():
            assert dg.materialize([daily], instance=instance, partition_key=day).success
        assert set(storage._engines) == {"index", *[r.run_id for r in instance.get_runs(limit=RECENT_RUNS)]}
    dagsters = SqliteEventLogStorage(str(home / "history" / "runs"))
    assert dagsters.get_materialized_partitions(dg.AssetKey("daily")) == set(days.get_partition_keys())
    assert len(dagsters.get_all_run_ids()) == len(days.get_partition_keys())


def test_the_local_event_log_says_where_it_needs_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(dg.DagsterInvariantViolationError, match=r"\$DAGSTER_HOME/history/runs.*`dp ui`"):
        LocalEventLogStorage()
