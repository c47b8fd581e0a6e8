"""The production instance as deployed: `dagster dev` (webserver + daemon) on deploy/dagster.prod.yaml
itself, its storage in PostgreSQL, its run queue admitting one run per table; the landing zone an S3
bucket on the moto server, the new-data sensor on. New files in S3 become sensor runs, queued one per
table at a time; a backfill launched through the webserver's GraphQL API is one run; `dp backfill`
submits one to the instance and follows it. What happened is read back from PostgreSQL's tables."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest

from dp_assets.config.loader import LoadedConfig, load_config_from
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets_tests.conftest import AWS_ENV, packaged_text, spark_available
from dp_assets_tests.test_ui import free_port

pytestmark = pytest.mark.skipif(not spark_available(), reason="needs Java for Spark")

ROOT = Path(__file__).resolve().parents[1]
DERIVED = "flights_by_origin"
ASSETS = ("raw/flights", "flights", DERIVED)
T = TypeVar("T")


@dataclass(frozen=True)
class Deployment:
    url: str  # the webserver
    env: dict[str, str]  # what its processes see: `dp backfill` runs with it too
    loaded: LoadedConfig  # the deployed config, for delivering files
    database: str  # the instance's PostgreSQL database

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.database) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def deliver(self, day: str) -> None:
        write_flight_deliveries(Lake(self.loaded), dt.date.fromisoformat(day), dt.date.fromisoformat(day))


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 420) -> T:
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(2)
    return value


def deployed_config(home: Path, bucket: str) -> Path:
    """The packaged config's flights table, delivered to S3, in a deployed env (sensors on, a tick
    every 5 s), and one derived table reading it."""
    text = packaged_text().split("\n# Dimension tables")[0]
    text = text.replace('env = "local"', 'env = "dev"').replace(
        'input_path = "landing"', f'input_path = "s3://{bucket}/landing"'
    )
    assert 'env = "dev"' in text and bucket in text and "[tables.airlines]" not in text
    (home / "transforms").mkdir()
    (home / "transforms" / f"{DERIVED}.sql").write_text(
        "SELECT flight_date, origin, count(*) AS departures, avg(dep_delay) AS avg_dep_delay\n"
        "FROM flights GROUP BY flight_date, origin\n"
    )
    path = home / "config.toml"
    path.write_text(
        text
        + "\n[automation]\nsensor_interval_seconds = 5\n"
        + f'\n[derived.{DERIVED}]\nkey = ["flight_date", "origin"]\n'
    )
    return path


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, postgres_dsn: str
) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("prod")
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    database = urlsplit(postgres_dsn)._replace(path=f"/{name}").geturl()
    aws = {**AWS_ENV, "AWS_ENDPOINT_URL": moto_endpoint}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws.items():
            mp.setenv(key, value)
        mp.setattr(boto3, "DEFAULT_SESSION", None)
        bucket = f"landing-{name.replace('_', '-')}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        config = deployed_config(home, bucket)
        (home / "dagster_home").mkdir()
        shutil.copy(ROOT / "deploy" / "dagster.prod.yaml", home / "dagster_home" / "dagster.yaml")
        env = {
            **{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
            **aws,
            "DP_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster_home"),
            "CONFIG_S3_URI": str(config),
            # SQLAlchemy 2.1 would pick psycopg 3 for postgresql://; dagster-postgres needs psycopg2.
            "DAGSTER_PG_URL": database.replace("postgresql://", "postgresql+psycopg2://", 1),
        }
        port = free_port()
        log = (home / "dagster_dev.log").open("w")
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster")),
                "dev",
                "-w",
                str(ROOT / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deployed = Deployment(
            f"http://127.0.0.1:{port}", env, load_config_from(str(config), home=home), database
        )
        try:
            wait_for("the webserver and the code location", lambda: loaded_location(deployed, server), 180)
            yield deployed
        finally:
            os.killpg(server.pid, 9)
            server.wait(timeout=30)
            log.close()
            print((home / "dagster_dev.log").read_text()[-5000:])  # shown when a test failed
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]


def loaded_location(deployment: Deployment, server: subprocess.Popen) -> bool | None:
    assert server.poll() is None, "dagster dev exited"
    try:
        data = deployment.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
    except OSError:
        return None
    (entry,) = data["workspaceOrError"]["locationEntries"]
    if entry["loadStatus"] != "LOADED":
        return None
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    return True


def runs_tagged(deployment: Deployment, key: str, value: str) -> list[dict[str, Any]]:
    """Runs with the tag, oldest first, with their queue and lifecycle events' times."""
    rows = deployment.query(
        "SELECT r.run_id, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
        "WHERE t.key = %s AND t.value = %s ORDER BY r.id",
        key,
        value,
    )
    runs = []
    for run_id, status in rows:
        times = dict(
            deployment.query(
                "SELECT dagster_event_type, min(timestamp) FROM event_logs WHERE run_id = %s "
                "AND dagster_event_type IN ('PIPELINE_ENQUEUED', 'PIPELINE_START', 'PIPELINE_SUCCESS', "
                "'PIPELINE_FAILURE') GROUP BY dagster_event_type",
                run_id,
            )
        )
        runs.append({"run_id": run_id, "status": status, **times})
    return runs


def ended(runs: list[dict[str, Any]], count: int) -> list[dict[str, Any]] | None:
    done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
    return runs if len(runs) == count and len(done) == count else None


def materialized(deployment: Deployment, run_ids: list[str]) -> set[tuple[str, str]]:
    rows = deployment.query(
        "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
        "AND run_id = ANY(%s)",
        run_ids,
    )
    return {("/".join(json.loads(key)), partition) for key, partition in rows}


def check_outcomes(deployment: Deployment, run_ids: list[str]) -> dict[str, set[str]]:
    """Each planned check's outcomes in the runs. A range run evaluates a check once for its whole
    range (partition NULL); Dagster 1.13 also plans one row per day of the range under the daemon,
    which no evaluation resolves, so those rows only say which checks were planned."""
    rows = deployment.query(
        "SELECT asset_key, check_name, partition, execution_status FROM asset_check_executions "
        "WHERE run_id = ANY(%s)",
        run_ids,
    )
    outcomes: dict[str, set[str]] = {}
    for key, check, partition, status in rows:
        done = outcomes.setdefault(f"{'/'.join(json.loads(key))}:{check}", set())
        if partition is None:
            done.add(status)
    return outcomes


def test_new_files_in_s3_become_sensor_runs_that_the_queue_admits_one_per_table(
    deployment: Deployment,
) -> None:
    deployment.deliver("2013-01-01")
    deployment.deliver("2013-01-03")  # not contiguous: one tick requests two runs of flights

    runs = wait_for(
        "the sensor's two runs to end",
        lambda: ended(runs_tagged(deployment, "dp/trigger", "new-data"), 2),
    )
    first, second = runs
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], runs
    # Both were queued before the first ended, and the second started only once it had ended.
    assert second["PIPELINE_ENQUEUED"] < first["PIPELINE_SUCCESS"] <= second["PIPELINE_START"]
    ids = [r["run_id"] for r in runs]
    assert materialized(deployment, ids) == {
        (asset, day) for asset in ASSETS for day in ("2013-01-01", "2013-01-03")
    }
    outcomes = check_outcomes(deployment, ids)
    assert len(outcomes) == 11 and all(s == {"SUCCEEDED"} for s in outcomes.values()), outcomes  # 3 + 5 + 3
    assert {t for (t,) in deployment.query("SELECT value FROM run_tags WHERE key = 'dp/derived'")} == {
        DERIVED
    }


def stop_sensor(deployment: Deployment) -> None:
    """Through GraphQL, as the UI's toggle does: later deliveries are only read by what a test runs."""
    sensor = deployment.graphql(
        '{ sensorOrError(sensorSelector: {repositoryLocationName: "dp", repositoryName: "__repository__", '
        'sensorName: "new_data_flights"}) { ... on Sensor { id } } }'
    )["sensorOrError"]
    stopped = deployment.graphql(
        "mutation($id: String) { stopSensor(id: $id) { ... on StopSensorMutationResult "
        "{ instigationState { status } } ... on PythonError { message } } }",
        id=sensor["id"],
    )["stopSensor"]
    assert stopped == {"instigationState": {"status": "STOPPED"}}, stopped


def test_a_backfill_launched_through_graphql_is_one_run(deployment: Deployment) -> None:
    stop_sensor(deployment)
    deployment.deliver("2013-01-02")  # the sensor is off: only the backfill reads it

    launched = deployment.graphql(
        "mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) "
        "{ __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }",
        params={
            "assetSelection": [{"path": a.split("/")} for a in ASSETS],
            "partitionNames": ["2013-01-01", "2013-01-02", "2013-01-03"],
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = launched["backfillId"]

    status = wait_for(
        "the backfill to complete",
        lambda: next(
            (
                s
                for (s,) in deployment.query("SELECT status FROM bulk_actions WHERE key = %s", backfill)
                if s.startswith(("COMPLETED", "FAILED", "CANCELED"))
            ),
            None,
        ),
    )
    (run,) = runs_tagged(deployment, "dagster/backfill", backfill)  # three days, one run
    assert (status, run["status"]) == ("COMPLETED_SUCCESS", "SUCCESS"), run
    tags = dict(deployment.query("SELECT key, value FROM run_tags WHERE run_id = %s", run["run_id"]))
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        "2013-01-01",
        "2013-01-03",
    )
    days = ("2013-01-01", "2013-01-02", "2013-01-03")
    assert materialized(deployment, [run["run_id"]]) == {(a, d) for a in ASSETS for d in days}
    outcomes = check_outcomes(deployment, [run["run_id"]])
    assert len(outcomes) == 11 and all(s == {"SUCCEEDED"} for s in outcomes.values()), outcomes


def dp_backfill(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("dp")), "backfill", *args, "--wait"],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_dp_backfill_submits_to_the_instance_and_follows_the_run_to_its_summary(
    deployment: Deployment,
) -> None:
    stop_sensor(deployment)
    deployment.deliver("2013-01-04")
    done = dp_backfill(deployment, "--start", "2013-01-04", "--end", "2013-01-04", "--tables", "flights")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    print(out)  # what the person who ran it saw
    backfill = out.split()[1].rstrip(":")
    assert f"{deployment.env['DAGSTER_HOME']}" in out and f"/runs/b/{backfill}" in out
    assert "load flights: published" in out  # progress from the Spark job, through the event log
    assert "flights" in out and "all passed" in out and "succeeded" in out
    (run,) = runs_tagged(deployment, "dagster/backfill", backfill)
    tags = dict(deployment.query("SELECT key, value FROM run_tags WHERE run_id = %s", run["run_id"]))
    assert tags["dp/table"] == "flights" and tags["dp/trigger"] == "backfill"  # queued behind flights' runs
    assert materialized(deployment, [run["run_id"]]) == {
        ("raw/flights", "2013-01-04"),
        ("flights", "2013-01-04"),
    }

    missing = dp_backfill(deployment, "--start", "2013-01-06", "--end", "2013-01-06", "--tables", "flights")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    print(missing.stdout)
    assert "no delivery for table 'flights', partition 2013-01-06" in missing.stdout  # the cause, in full
    assert "FAILED in raw/flights: MissingDelivery" in missing.stdout  # and on the summary
    failed = missing.stdout.split()[1].rstrip(":")
    (run,) = runs_tagged(deployment, "dagster/backfill", failed)
    assert run["status"] == "FAILURE" and materialized(deployment, [run["run_id"]]) == set()
