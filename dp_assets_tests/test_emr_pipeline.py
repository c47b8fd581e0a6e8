"""The whole demo pipeline through each EMR launcher, on the emulator with real spark-submit.

The path is the production one: `dp deploy` publishes a release to (moto) S3, the config is loaded
from the pinned CONFIG_S3_URI it prints, and DP_SPARK_LAUNCHER picks the launcher; the emulated
cluster fetches the release's entry script and spark_jobs.zip, reads its Pipes context from S3 and
writes its report there. Only the lake stays a local folder, because local Spark cannot read s3a.
The demo is all of it: flights from files, the three dimension tables from PostgreSQL and the
derived daily_carrier_delays (the release's SQL), all in one Spark application per run. Every
launcher must publish the same rows, statistics and check results as the local one.
"""

from __future__ import annotations

import datetime as dt
import platform
import shutil
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.compute as pc
import pytest

from dp_assets.cli import main
from dp_assets.config.loader import load_config_from
from dp_assets.definitions import build_definitions
from dp_assets.demo import seed_dimensions, write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets_tests.conftest import PACKAGED_CONFIG, spark_available
from dp_assets_tests.emr_emulator import (
    ACCOUNT,
    EmrEmulator,
    release_runner,
    serverless_application,
    shared_cluster,
)
from dp_assets_tests.helpers import checks_by_asset, materializations, materialize_range, read_table
from spark_jobs.contract import RUN_SCRIPT

pytestmark = pytest.mark.skipif(not spark_available(), reason="needs Java for Spark")

START, END = "2013-01-01", "2013-01-03"
TABLES = ("flights", "airlines", "airports", "planes")
DERIVED = "daily_carrier_delays"
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
python = "/usr/bin/python3.11"  # Serverless 7.x: a custom image with python3.11 (the EC2 default too)
cluster = {{ release_label = "emr-7.5.0", core_instance_count = 1, tags = {{ team = "data" }} }}
"""


@pytest.fixture
def pinned_config(
    versioned_bucket: str, postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    """A release of the demo config and its transforms, set up for all three EMR launchers, with
    the demo's dimension tables seeded in PostgreSQL; the pinned URI."""
    seed_dimensions(postgres_dsn)
    for bucket in (PIPES_BUCKET, LOG_BUCKET):
        boto3.client("s3").create_bucket(Bucket=bucket)
    # The runtimes: transient cluster emr-7.5.0 (Spark 3.5), shared cluster emr-spark-8.0.0 (Spark 4.0),
    # Serverless emr-7.5.0 (Spark 3.5); the local run is this environment's pyspark.
    cluster_id, app_id = shared_cluster(release_label="emr-spark-8.0.0"), serverless_application("emr-7.5.0")
    config = tmp_path / "config.toml"
    config.write_text(PACKAGED_CONFIG.read_text() + emr_settings(cluster_id, app_id))
    shutil.copytree(PACKAGED_CONFIG.parent / "transforms", tmp_path / "transforms")
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
    result = materialize_range(loaded, START, END, tables=TABLES, derived=(DERIVED,))
    return loaded, delivered, result


def published(loaded, table: str) -> dict[str, int]:
    """Rows per partition of a published table."""
    column = loaded.config.tables[table].partition_column
    rows = read_table(Path(loaded.output_path) / table).to_table()
    counts = pc.value_counts(rows[column].cast("string")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def derived_rows(loaded) -> list[dict]:
    """The derived table's rows, floats rounded (aggregation order may differ in the last digit)."""
    rows = read_table(Path(loaded.output_path) / DERIVED).to_table().to_pylist()
    rounded = [
        {
            k: round(v, 9) if isinstance(v, float) else str(v) if isinstance(v, dt.date) else v
            for k, v in r.items()
        }
        for r in rows
    ]
    return sorted(rounded, key=lambda r: (r["flight_date"], r["carrier"]))


def carrier_days(loaded) -> list[tuple[str, str]]:
    """(flight_date, carrier) pairs that flew, from the published flights: one derived row each."""
    flights = read_table(Path(loaded.output_path) / "flights").to_table(columns=["flight_date", "carrier"])
    return sorted({(str(d), c) for d, c in zip(*flights.to_pydict().values(), strict=True)})


def partition_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, dict]:
    """Per partition: its row count and every statistic (stats/<column>/nulls|min|max)."""
    return {
        m.partition: {
            k: v.value for k, v in m.metadata.items() if k == "dagster/row_count" or k.startswith("stats/")
        }
        for m in materializations(result, node)
    }


def shared_metadata(result: dg.ExecuteInProcessResult, node: str, key: str) -> object:
    """A metadata value the job reported once for the whole run (on every partition's event)."""
    return materializations(result, node)[0].metadata[key].value


RUNTIMES = {"emr": "3.5.", "emr-existing": "4.0.", "emr-serverless": "3.5."}


def test_every_emr_launcher_matches_the_local_run(
    pinned_config: str, emr_emulator: EmrEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emr_emulator.runner = release_runner()
    baseline = None
    spark_lines, applications, submitted, clusters = {}, {}, {}, {}
    emr = boto3.client("emr")
    for launcher in ("local", "emr", "emr-existing", "emr-serverless"):
        commands_before, clusters_before = len(emr_emulator.commands), len(emr.list_clusters()["Clusters"])
        loaded, delivered, result = run_through(launcher, pinned_config, tmp_path / launcher, monkeypatch)
        submitted[launcher] = [Path(c.argv[-1]).name for c in emr_emulator.commands[commands_before:]]
        clusters[launcher] = len(emr.list_clusters()["Clusters"]) - clusters_before
        assert result.success, launcher
        outcome = {
            "rows": {t: published(loaded, t) for t in TABLES},
            "metadata": {t: partition_metadata(result, t) for t in (*TABLES, DERIVED)},
            "checks": checks_by_asset(result),
            "derived": derived_rows(loaded),
            # what each table's job found in its metastore (Derby locally, the Glue stand-in on EMR)
            "catalog": {t: shared_metadata(result, t, "catalog_partitions") for t in TABLES},
        }
        runtimes = [shared_metadata(result, t, "spark_runtime") for t in (*TABLES, DERIVED)]
        spark_lines[launcher] = {r["spark"] for r in runtimes}  # type: ignore[index]
        applications[launcher] = len({r["application_id"] for r in runtimes})  # type: ignore[index]
        python = platform.python_version() if launcher == "local" else "3.11."  # EMR: /usr/bin/python3.11
        assert all(r["python"].startswith(python) for r in runtimes), (launcher, runtimes)  # type: ignore[index]
        assert all((r["ansi"], r["time_zone"]) == ("true", "UTC") for r in runtimes), runtimes  # type: ignore[index]
        assert outcome["rows"]["flights"] == delivered, launcher  # every delivered row is published
        if baseline is None:
            baseline = outcome
            days = {START: 842, "2013-01-02": 943, "2013-01-03": 914}
            assert outcome["rows"] == {
                "flights": days,
                **{
                    t: dict.fromkeys(days, n)
                    for t, n in (("airlines", 16), ("airports", 1458), ("planes", 3322))
                },
            }
            declared = {
                (spec.asset_key.to_user_string(), spec.name)
                for asset in build_definitions(loaded).assets  # type: ignore[union-attr]
                if isinstance(asset, dg.AssetsDefinition)
                for spec in asset.check_specs
                if spec.asset_key.path[-1] in (*TABLES, DERIVED)
            }
            # 5 per loaded table, 2 per dump and files_as_declared for the delivered one, 3 for the
            # derived table (README: "the same 32 check results")
            assert len(declared) == 32
            assert set(outcome["checks"]) == declared  # every check of every table ran, and passed
            assert all(outcome["checks"].values()), [k for k, ok in outcome["checks"].items() if not ok]
            assert [(r["flight_date"], r["carrier"]) for r in outcome["derived"]] == carrier_days(loaded)
            assert all(r["airline"] is not None for r in outcome["derived"])  # every carrier has its snapshot
            assert outcome["catalog"] == {t: list(days) for t in TABLES}
        else:
            assert outcome == baseline, launcher
    # Each launcher ran on its release's Spark (the local run on this environment's, or a lane's).
    for launcher, line in RUNTIMES.items():
        assert len(spark_lines[launcher]) == 1 and spark_lines[launcher].pop().startswith(line), launcher
    # One Spark application ran the whole run (4 loads and the derived table, three days): one step
    # on the existing cluster, one transient cluster with one step, one Serverless job run.
    assert applications == dict.fromkeys(submitted, 1)
    assert submitted == {
        "local": [],
        **{key: [RUN_SCRIPT] for key in ("emr", "emr-existing", "emr-serverless")},
    }
    assert clusters == {"local": 0, "emr": 1, "emr-existing": 0, "emr-serverless": 0}
