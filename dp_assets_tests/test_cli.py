"""The `dp` command: config show/validate, and the demo as a real subprocess on a fresh DP_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import dagster as dg
import pytest

from dp_assets.cli import main
from dp_assets_tests.conftest import packaged_text

DP = str(Path(sys.executable).with_name("dp"))


def test_config_show_json_packaged(capsys: pytest.CaptureFixture[str], isolated_home: Path) -> None:
    assert main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"provenance", "config"}
    assert shown["provenance"]["source"] == "packaged"
    assert shown["config"]["general"]["input_path"] == str(isolated_home / "landing")
    assert shown["config"]["general"]["output_path"] == str(isolated_home / "lake")


def test_config_show_doubled_prefix_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--config-s3", "s3://s3://bucket/key"]) == 1
    assert "s3:// prefix is given twice" in capsys.readouterr().err


def test_config_show_reports_s3_version(capsys: pytest.CaptureFixture[str], versioned_bucket: str) -> None:
    put = boto3.client("s3").put_object(
        Bucket=versioned_bucket, Key="c/config.toml", Body=packaged_text().encode()
    )
    assert main(["config", "show", "--json", "--config-s3", f"s3://{versioned_bucket}/c/config.toml"]) == 0
    prov = json.loads(capsys.readouterr().out)["provenance"]
    assert prov["source"] == "s3"
    assert prov["version_id"] == put["VersionId"]
    assert prov["etag"] == put["ETag"].strip('"')
    assert len(prov["sha256"]) == 64


def test_config_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(packaged_text())
    bad.write_text(packaged_text().replace("[processing]", "[processing]\nturbo = true"))
    assert main(["config", "validate", str(good)]) == 0
    assert main(["config", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "processing.turbo: unknown key" in err


def test_run_refuses_unknown_tables_and_bad_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--start", "2013-01-01", "--end", "2013-01-02", "--tables", "nope"]) == 2
    assert "unknown table(s) ['nope']" in capsys.readouterr().err
    assert main(["run", "--start", "2012-12-31", "--end", "2013-01-01"]) == 2
    assert "outside the partitions" in capsys.readouterr().err


@pytest.mark.spark_job
def test_demo_subprocess_writes_lake_and_records_run_in_default_instance(isolated_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    proc = subprocess.run(
        [DP, "demo", "--start", "2013-01-30", "--end", "2013-01-31"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = [line.split() for line in proc.stdout.splitlines() if line.startswith("flights ")]
    assert summary[1:3] == ["2", str(_delivered_rows(isolated_home))]  # partitions, rows
    assert summary[-2:] == ["all", "passed"]
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    for name in ("airlines", "airports", "planes", "daily_carrier_delays"):  # PostgreSQL, and derived
        assert lines[name][1] == "2" and int(lines[name][2]) > 0, lines.get(name)
    assert int(lines["airlines"][2]) == 2 * 16  # a full snapshot per day
    # Progress per table and stage, then the summary; Dagster's event stream is in the log file.
    out = proc.stdout.splitlines()
    assert len(out) < 50 and not [line for line in out if "DEBUG" in line], proc.stdout
    progress = {" ".join(line.split()[1:3]) for line in out if line[:2].isdigit() and line[2] == ":"}
    for table in ("flights", "airlines", "airports", "planes"):
        assert {f"dump {table}:", f"load {table}:"} <= progress, progress
    assert {"spark: starting", "derive daily_carrier_delays:"} <= progress, progress
    # The run's application started while Dagster created the run, and the run took it over.
    assert any("spark: Spark" in line and "ahead of the run, which took it over" in line for line in out), out
    assert any(line.split()[1:4] == ["load", "flights:", "published,"] for line in out)
    (log_file,) = [
        Path(w)
        for line in out
        if "every event of the run goes to" in line
        for w in line.split()
        if w.endswith(".log")
    ]
    assert "STEP_START" in log_file.read_text() and "DEBUG" in log_file.read_text()
    dagster_home = isolated_home / "dagster_home"
    assert (dagster_home / "dagster.yaml").is_file()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        assert runs[0].tags["dagster/asset_partition_range_end"] == "2013-01-31"


def _delivered_rows(home: Path) -> int:
    files = list((home / "landing" / "flights").rglob("*.csv"))
    assert len(files) == 2
    return sum(len(f.read_text().splitlines()) - 1 for f in files)
