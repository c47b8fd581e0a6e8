"""The demo pipeline through each EMR launcher, on the emulator with real spark-submit.

The path is the production one: `dp deploy` publishes a release to (moto) S3, the config is loaded
from the pinned CONFIG_S3_URI it prints, and DP_SPARK_LAUNCHER picks the launcher; the emulated
cluster fetches the release's entry script and spark_jobs.zip, reads its Pipes context from S3 and
writes its report there. Only the lake stays a local folder, because local Spark cannot read s3a.
Every launcher must publish the same rows and the same check results as the local one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.compute as pc
import pytest

from dp_assets.cli import main
from dp_assets.config.loader import load_config_from
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets.launchers.local import spark_submit_path
from dp_assets_tests.conftest import packaged_text, spark_available
from dp_assets_tests.emr_emulator import (  # noqa: F401
    ACCOUNT,
    EmrEmulator,
    emr_emulator_fixture,
    serverless_application,
    shared_cluster,
    spark_submit_runner,
)
from dp_assets_tests.helpers import check_results, materialize_range, read_table

pytestmark = pytest.mark.skipif(not spark_available(), reason="needs Java for Spark")

START, END = "2013-01-01", "2013-01-03"
DERIVED = "daily_origin_delays"  # a derived table too, so transform_table.py runs from the release
DERIVED_SQL = """
SELECT flight_date, origin, count(*) AS departures, avg(dep_delay) AS avg_dep_delay
FROM flights GROUP BY flight_date, origin
"""
PIPES_BUCKET, LOG_BUCKET = "dp-pipes", "dp-logs"


def emr_settings(cluster_id: str, application_id: str) -> str:
    return f"""
[spark.emr]
messages_uri = "s3://{PIPES_BUCKET}/runs"
log_uri = "s3://{LOG_BUCKET}/emr/"
region = "us-east-1"
poll_interval_seconds = 0.5
log_wait_seconds = 5
cluster_id = "{cluster_id}"
application_id = "{application_id}"
execution_role_arn = "arn:aws:iam::{ACCOUNT}:role/dp-job"
cluster = {{ release_label = "emr-7.5.0", core_instance_count = 1, tags = {{ team = "data" }} }}
"""


@pytest.fixture
def pinned_config(versioned_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A release of the demo config, set up for all three EMR launchers; the pinned URI."""
    for bucket in (PIPES_BUCKET, LOG_BUCKET):
        boto3.client("s3").create_bucket(Bucket=bucket)
    cluster_id, app_id = shared_cluster(), serverless_application()
    config = tmp_path / "config.toml"
    config.write_text(packaged_text() + emr_settings(cluster_id, app_id))
    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / f"{DERIVED}.sql").write_text(DERIVED_SQL)
    args = ["deploy", "--env", "dev", "--config", str(config), "--bucket", versioned_bucket]
    assert main([*args, "--deployment-id", "r1"]) == 0
    return capsys.readouterr().out.split("CONFIG_S3_URI='")[1].split("'")[0]


def run_through(launcher: str, pinned: str, home: Path, monkeypatch: pytest.MonkeyPatch):
    """Deliver the demo days into a fresh lake under `home` and run dump -> load through `launcher`."""
    monkeypatch.setenv("DP_SPARK_LAUNCHER", launcher)
    loaded = load_config_from(pinned, home=home)
    delivered = write_flight_deliveries(
        Lake(loaded), dt.date.fromisoformat(START), dt.date.fromisoformat(END)
    )
    result = materialize_range(loaded, START, END, derived=(DERIVED,))
    return loaded, delivered, result


def published(loaded, table: str = "flights") -> dict[str, int]:
    rows = read_table(Path(loaded.output_path) / table).to_table()
    counts = pc.value_counts(rows["flight_date"].cast("string")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def derived_rows(loaded) -> list[tuple]:
    rows = read_table(Path(loaded.output_path) / DERIVED).to_table().to_pylist()
    return sorted(
        (str(r["flight_date"]), r["origin"], r["departures"], round(r["avg_dep_delay"], 9)) for r in rows
    )


def partition_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, dict]:
    """Per partition: its row count and every statistic (stats/<column>/nulls|min|max)."""
    return {
        m.partition: {
            k: v.value for k, v in m.metadata.items() if k == "dagster/row_count" or k.startswith("stats/")
        }
        for m in result.asset_materializations_for_node(node)
    }


def test_every_emr_launcher_matches_the_local_run(
    pinned_config: str, emr_emulator: EmrEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emr_emulator.runner = spark_submit_runner(spark_submit_path())
    baseline = None
    for launcher in ("local", "emr", "emr-existing", "emr-serverless"):
        loaded, delivered, result = run_through(launcher, pinned_config, tmp_path / launcher, monkeypatch)
        assert result.success, launcher
        outcome = (
            published(loaded),
            partition_metadata(result, "flights"),
            check_results(result),
            derived_rows(loaded),
            partition_metadata(result, DERIVED),
        )
        assert outcome[0] == delivered, launcher  # every delivered row is published
        if baseline is None:
            baseline = outcome
            assert all(outcome[2].values()) and len(outcome[2]) == 7  # 2 dump + 5 load checks
        else:
            assert outcome == baseline, launcher
    # Each EMR launcher ran one step (or job run) per table for the three days, from the release.
    scripts = sorted(Path(c.argv[-1]).name for c in emr_emulator.commands)
    assert scripts == ["load_table.py"] * 3 + ["transform_table.py"] * 3
