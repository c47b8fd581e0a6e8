"""dump -> load -> checks end to end on real local Spark (spark-submit through Pipes)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.compute as pc
import pytest

from dp_assets.config.loader import load_config_from
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.definitions import build_definitions
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake, published_folders
from dp_assets.launchers import local
from dp_assets.partitions import daily_partitions
from dp_assets.runner import expected_input, run_range, warm_spark
from dp_assets.stages.tables import TABLES_OP
from dp_assets_tests import helpers
from dp_assets_tests.bad_inputs import CLEAN, KINDS, day_of, write_config
from dp_assets_tests.conftest import packaged_text
from dp_assets_tests.helpers import check_results, demo_lake, materializations, materialize_keys, read_table
from spark_jobs.contract import CURRENT

# The tests marked spark_job run again on each EMR Spark line (.ci/run): those that take the jobs
# through Spark's APIs. Publishing, overrides and kills are the orchestrator's and the lake's, the
# same on every line.

START, END = "2013-01-01", "2013-01-03"


def materialize_range(loaded, start: str, end: str, extra_assets=(), raise_on_error: bool = True):
    """The run and the instance that holds its event log."""
    instance = dg.DagsterInstance.ephemeral()
    result = helpers.materialize_range(loaded, start, end, tuple(extra_assets), raise_on_error, instance)
    return result, instance


@pytest.fixture(scope="module")
def three_days(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("three_days")
    loaded, delivered = demo_lake(home, START, END)
    result, instance = materialize_range(loaded, START, END)
    return loaded, delivered, result, instance


@pytest.mark.spark_job
def test_range_loads_every_row_into_hive_partitions(three_days) -> None:
    loaded, delivered, result, _ = three_days
    assert result.success
    table = read_table(Path(loaded.output_path) / "flights").to_table()
    assert table.num_rows == sum(delivered.values()) == 842 + 943 + 914
    by_day = pc.value_counts(table["flight_date"].cast("string")).to_pylist()
    assert {d["values"]: d["counts"] for d in by_day} == delivered
    table_folder = Path(loaded.output_path) / "flights"
    assert [str(f.relative_to(table_folder)) for f in published_folders(table_folder).values()] == [
        f"_versions/{result.run_id}/flight_date={d}" for d in delivered
    ]
    assert str(table.schema.field("time_hour").type) == "timestamp[us, tz=UTC]"


@pytest.mark.spark_job
def test_every_check_passes_and_reports_through_pipes(three_days) -> None:
    _, _, result, _ = three_days
    assert check_results(result) == {
        "schema_matches_design": True,
        "required_columns_not_null": True,
        "key_unique": True,
        "row_accounting": True,
        "quarantine_within_threshold": True,
        "no_duplicate_delivery": True,
        "files_as_declared": True,
        "no_undeclared_sensitive_data": True,
    }


@pytest.mark.spark_job
def test_one_run_one_spark_application_for_the_range(three_days) -> None:
    _, delivered, result, instance = three_days
    steps = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    assert steps == [TABLES_OP]
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert sum("load flights: started, 3 day(s), 2013-01-01..2013-01-03" in m for m in logs) == 1
    mats = materializations(result, "flights")
    assert sorted(m.partition for m in mats) == sorted(delivered)


@pytest.mark.spark_job
def test_the_job_ran_on_the_runtime_the_launcher_pinned(three_days) -> None:
    """The job reports the Spark and Python it really ran on: the launcher's runtime (this
    environment's, or the lane's DP_SPARK_HOME/DP_SPARK_PYTHON), in UTC with ANSI mode on."""
    loaded, _, result, _ = three_days
    expected = build_definitions(loaded).resources["spark"].runtime()
    python = os.environ.get("DP_SPARK_PYTHON", sys.executable)
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], text=True, capture_output=True
    ).stdout.strip()
    reported = materializations(result, "flights")[0].metadata["spark_runtime"].value
    assert reported["spark"].startswith(expected.spark + "."), reported
    assert (reported["python"], reported["ansi"], reported["time_zone"]) == (version, "true", "UTC")
    # As its JVM was started: the tests start every JVM so (jvm.py), and the launcher a run this small.
    assert reported["jit"] == "quick compiler only"


@pytest.mark.spark_job
def test_the_host_time_zone_changes_nothing(
    three_days, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spark's session time zone is pinned to UTC: a JVM in Tokyo parses time_hour to the same
    instants and the same row_hash as everywhere else."""
    loaded, _, _, _ = three_days
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # spark-submit's JVM and Python workers inherit it
    tokyo, _ = demo_lake(tmp_path / "tokyo", START, START)
    materialize_range(tokyo, START, START)
    columns = ["flight_date", "time_hour", "row_hash"]

    def rows(lake: str) -> list[tuple]:
        table = read_table(Path(lake) / "flights").to_table(columns=columns)
        day = table.filter(pc.equal(table["flight_date"].cast("string"), START))
        return sorted(zip(day["time_hour"].to_pylist(), day["row_hash"].to_pylist(), strict=True))

    assert rows(tokyo.output_path) == rows(loaded.output_path)


@pytest.mark.spark_job
def test_materializations_carry_counts_schema_and_config_provenance(three_days) -> None:
    loaded, delivered, result, _ = three_days
    for node in ("raw/flights", "flights"):
        mats = materializations(result, node)
        assert {m.partition: m.metadata["dagster/row_count"].value for m in mats} == delivered
        md = mats[0].metadata
        assert md["config_sha256"].value == loaded.provenance.sha256
        assert md["config_source"].value == "packaged"
    load_md = materializations(result, "flights")[0].metadata
    assert load_md["rows_quarantined"].value == 0
    assert load_md["rows_by_partition"].value == delivered
    columns = [c.name for c in load_md["dagster/column_schema"].schema.columns]
    assert columns[:3] == ["year", "month", "day"]
    assert columns[-3:] == ["row_hash", "load_date", "flight_date"]


@pytest.mark.spark_job
def test_each_partition_carries_its_own_statistics(three_days) -> None:
    """Row count, null counts and min/max per partition, as computed independently from the files."""
    loaded, _, result, _ = three_days
    table = read_table(Path(loaded.output_path) / "flights").to_table()
    for mat in materializations(result, "flights"):
        md = mat.metadata
        day = table.filter(pc.equal(table["flight_date"].cast("string"), mat.partition))
        assert md["dagster/row_count"].value == md["rows_in"].value == day.num_rows
        assert md["rows_quarantined"].value == md["rows_deduplicated"].value == 0
        for column in ("dep_time", "dep_delay", "arr_delay", "tailnum", "carrier"):
            assert md[f"stats/{column}/nulls"].value == day[column].null_count, column
        assert md["stats/dep_time/nulls"].value > 0  # cancelled flights: the demo has real nulls
        for column in ("dep_delay", "distance", "flight"):
            assert md[f"stats/{column}/min"].value == pc.min(day[column]).as_py(), column
            assert md[f"stats/{column}/max"].value == pc.max(day[column]).as_py(), column
        assert isinstance(md["stats/flight/max"], dg.IntMetadataValue)  # numbers are plotted
        assert isinstance(md["stats/dep_delay/max"], dg.FloatMetadataValue)
        assert md["stats/time_hour/min"].value.startswith(mat.partition)
        assert "stats/carrier/min" not in md  # strings get null counts only
    raw = {m.partition: m.metadata for m in materializations(result, "raw/flights")}
    assert all(md["files"].value == 1 and md["bytes"].value > 0 for md in raw.values())


@pytest.mark.spark_job
def test_every_number_on_a_partition_is_that_partitions_own(three_days) -> None:
    """Bytes are each day's own (its published folder); what only the whole range has (partitions,
    seconds, totals) is one JSON entry, which the UI does not plot across partitions."""
    loaded, delivered, result, _ = three_days
    folders = published_folders(Path(loaded.output_path) / "flights")
    load = {m.partition: m.metadata for m in materializations(result, "flights")}
    for day, md in load.items():
        assert md["bytes"].value == sum(f.stat().st_size for f in folders[day].glob("[!.]*"))
    (totals,) = {json.dumps(md["range_totals"].value, sort_keys=True) for md in load.values()}
    assert json.loads(totals)["bytes"] == sum(md["bytes"].value for md in load.values())
    assert json.loads(totals)["partitions"] == 3 and json.loads(totals)["rows"] == sum(delivered.values())
    raw = {m.partition: m.metadata for m in materializations(result, "raw/flights")}
    for md in (*load.values(), *raw.values()):
        numbers = {k for k, v in md.items() if isinstance(v, dg.IntMetadataValue | dg.FloatMetadataValue)}
        assert not numbers & {"partitions", "spark_seconds", "dump_seconds"}
    assert all(md["range_totals"].value["dump_seconds"] > 0 for md in raw.values())


@pytest.mark.spark_job
def test_manifest_records_files_rows_bytes_sha256(three_days) -> None:
    loaded, delivered, _, _ = three_days
    lake = Lake(loaded)
    manifest = json.loads(Path(lake.uri(lake.manifest_path("flights", START))).read_text())
    assert manifest["rows"] == delivered[START]
    (entry,) = manifest["files"]
    raw_file = Path(lake.uri(lake.raw_prefix("flights", START))) / entry["file"]
    assert entry["sha256"] == hashlib.sha256(raw_file.read_bytes()).hexdigest()
    assert entry["bytes"] == raw_file.stat().st_size


@pytest.mark.spark_job
def test_rerun_is_idempotent(three_days) -> None:
    loaded, delivered, _, _ = three_days
    before = (
        read_table(Path(loaded.output_path) / "flights")
        .to_table()
        .sort_by(
            [
                ("flight_date", "ascending"),
                ("carrier", "ascending"),
                ("flight", "ascending"),
                ("origin", "ascending"),
            ]
        )
    )
    again, _ = materialize_range(loaded, END, END)  # only the last day: other partitions untouched
    assert again.success
    after = (
        read_table(Path(loaded.output_path) / "flights")
        .to_table()
        .sort_by(
            [
                ("flight_date", "ascending"),
                ("carrier", "ascending"),
                ("flight", "ascending"),
                ("origin", "ascending"),
            ]
        )
    )
    assert after.num_rows == sum(delivered.values())
    assert after.equals(before)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def catalog_day(loaded, day: str) -> list[str]:
    """The row_hash set a new Spark application reads for the day through the catalog (Derby)."""
    query = f"SELECT row_hash FROM nycflights13.flights WHERE flight_date = '{day}'"
    out = helpers.through_catalog(
        loaded, f"print('HASHES', sorted(r[0] for r in spark.sql({query!r}).collect()))"
    )
    return json.loads(out.split("HASHES ", 1)[1].strip().replace("'", '"'))


def test_a_failed_check_publishes_nothing_and_the_override_publishes_the_rejected_version(
    tmp_path: Path,
) -> None:
    """Write, audit, publish: a rerun whose new rows fail key_unique leaves the published partition
    byte-identical (lake and catalog), keeps the rejected version, blocks downstream; `dp publish`
    (publish_rejected) publishes exactly that version, its failed check reported as a warning."""
    day = "2013-01-02"
    loaded, delivered = demo_lake(tmp_path / "wap", day, day)
    assert materialize_range(loaded, day, day)[0].success
    table = Path(loaded.output_path) / "flights"
    published = published_folders(table)[day]
    before, hashes_before = files_of(published), catalog_day(loaded, day)
    assert len(hashes_before) == delivered[day]

    lake = Lake(loaded)
    delivery = Path(lake.landing.uri(lake.delivery_prefix("flights", day))) / f"flights_{day}.csv"
    lines = delivery.read_text().splitlines(keepends=True)
    fields = lines[1].split(",")
    fields[3] = "not-a-time"  # dep_time must be an int
    delivery.write_text("".join([*lines, lines[2], ",".join(fields)]))  # one duplicate key, one bad value
    downstream_ran = []

    @dg.asset(
        deps=["flights"],
        partitions_def=daily_partitions(loaded.config.general),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def flights_report() -> None:
        downstream_ran.append(True)

    result, _ = materialize_range(loaded, day, day, extra_assets=[flights_report], raise_on_error=False)
    checks = check_results(result)
    assert checks["key_unique"] is False
    assert checks["row_accounting"] is True  # rows in = loaded + quarantined, bad row included
    assert downstream_ran == [] and not materializations(result, "flights_report")
    assert not materializations(result, "flights")  # held back: nothing was published
    assert published_folders(table)[day] == published  # the lake and the catalog unchanged
    assert files_of(published) == before and catalog_day(loaded, day) == hashes_before
    assert published_folders(Path(loaded.output_path) / "_quarantine" / "flights") == {}

    run = result.run_id
    rejected = Path(loaded.output_path) / "flights" / "_rejected" / run
    (key_unique,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "key_unique"]
    assert key_unique.metadata["rejected_uri"].value == str(rejected)
    assert key_unique.metadata["held_back_partitions"].value == [day]
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message
    assert "flights: held back: blocking check(s) key_unique failed" in message
    assert f"dp publish --run {run} --tables flights" in message
    assert read_table(rejected).to_table().num_rows == delivered[day] + 1  # the duplicate included
    held_quarantine = read_table(Path(loaded.output_path) / "_quarantine" / "flights" / "_rejected" / run)
    assert held_quarantine.to_table()["_reject_reason"].to_pylist() == ["dep_time: not a valid int"]

    again = helpers.materialize_range(loaded, day, day)  # held back again: a second rejected version
    other = rejected.parent / again.run_id
    assert not again.success and other.exists()

    summary = run_range(
        loaded,
        dt.date(2013, 1, 2),
        dt.date(2013, 1, 2),
        dg.DagsterInstance.ephemeral(),
        ["flights"],
        publish_rejected=run,
    )
    assert summary.ok, summary.render()
    assert summary.tables["flights"].warned_checks == ["key_unique"]  # reviewed: published, and says so
    assert not rejected.exists()
    assert not other.exists()  # superseded: publishing it now would overwrite what was just published
    stale = helpers.materialize_range(loaded, day, day, tables=("flights",), publish_rejected=again.run_id)
    assert not stale.success and materializations(stale, "flights") == []
    after = read_table(table).to_table()
    assert after.num_rows == delivered[day] + 1 and len(catalog_day(loaded, day)) == delivered[day] + 1
    assert published_folders(table)[day].parts[-2] == run  # the reviewed version itself
    assert files_of(published) == before  # the replaced version stays readable for the retention
    quarantine = read_table(Path(loaded.output_path) / "_quarantine" / "flights").to_table()
    assert quarantine["_reject_reason"].to_pylist() == ["dep_time: not a valid int"]
    assert quarantine["_line"].to_pylist() == [len(lines) + 2]
    assert quarantine["dep_time"].to_pylist() == ["not-a-time"]
    assert quarantine["_source_file"][0].as_py().endswith(f"flights_{day}.csv")


def test_missing_delivery_names_partition_and_location(tmp_path: Path) -> None:
    loaded, _ = demo_lake(tmp_path / "missing", "2013-01-01", "2013-01-01")
    defs = build_definitions(loaded)
    result = materialize_keys(
        defs,
        ["raw", "flights"],
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2013-01-05",
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message
    assert "partition 2013-01-05" in message
    assert str(Path(loaded.input_path) / "flights" / "2013-01-05") in message


def test_run_fails_when_config_changed_since_definitions_loaded(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(packaged_text())
    loaded = load_config_from(str(cfg), home=tmp_path)
    defs = build_definitions(loaded)
    cfg.write_text(packaged_text().replace("max_partitions = 400", "max_partitions = 5"))  # edited after load
    resource = defs.resources["pipeline"]
    assert isinstance(resource, PipelineConfigResource)
    result = materialize_keys(
        defs,
        ["raw", "flights"],
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2013-01-01",
        raise_on_error=False,
    )
    assert not result.success
    failures = [
        e
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.RUN_FAILURE or e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    text = " ".join(str(e.event_specific_data) for e in failures)
    assert "changed since the definitions were loaded" in text
    assert loaded.provenance.sha256 in text


def test_publishing_switches_a_days_location_and_deletes_the_replaced_version_after_the_retention(
    tmp_path: Path,
) -> None:
    """A rerun writes a version of its own and points the day at it, in the lake and in the catalog
    (its partition's location): nothing a reader is reading is overwritten. The replaced version is deleted
    once keep_superseded_hours has passed (0 here: at the next publish)."""
    day = "2013-01-02"
    config = tmp_path / "config.toml"
    config.write_text(packaged_text().replace("keep_superseded_hours = 24", "keep_superseded_hours = 0"))
    loaded = load_config_from(str(config), home=tmp_path)
    write_flight_deliveries(Lake(loaded), dt.date(2013, 1, 2), dt.date(2013, 1, 2))
    table = Path(loaded.output_path) / "flights"
    first, _ = materialize_range(loaded, day, day)
    old = published_folders(table)[day]
    second, _ = materialize_range(loaded, day, day)
    assert first.success and second.success
    new = published_folders(table)[day]
    assert new == table / "_versions" / second.run_id / f"flight_date={day}"
    assert not old.exists() and not (table / "_versions" / first.run_id).exists()
    query = f"SHOW TABLE EXTENDED IN nycflights13 LIKE 'flights' PARTITION (flight_date = '{day}')"
    out = helpers.through_catalog(loaded, f"print('INFO', spark.sql({query!r}).first().information)")
    assert f"Location: file:{new}\n" in out.split("INFO ", 1)[1]


def test_a_table_written_before_versions_keeps_its_days_when_published_again(tmp_path: Path) -> None:
    """A lake written by an older dp has each day directly under the table folder, and no
    _dp_current.json: those days stay published as they are, and a new run publishes beside them."""
    loaded, delivered = demo_lake(tmp_path, "2013-01-01", "2013-01-02")
    assert materialize_range(loaded, "2013-01-01", "2013-01-02")[0].success
    table = Path(loaded.output_path) / "flights"
    for day, folder in published_folders(table).items():  # the layout older releases wrote
        folder.rename(table / f"flight_date={day}")
    (table / CURRENT).unlink()
    shutil.rmtree(table / "_versions")
    again, _ = materialize_range(loaded, "2013-01-02", "2013-01-02")
    assert again.success
    folders = published_folders(table)
    assert folders["2013-01-01"] == table / "flight_date=2013-01-01"  # kept where it was
    assert folders["2013-01-02"].parts[-2] == again.run_id
    days = read_table(table).to_table(columns=["flight_date"])["flight_date"]
    assert {c["values"]: c["counts"] for c in pc.value_counts(days).to_pylist()} == delivered


@pytest.mark.spark_job
def test_table_is_registered_in_the_spark_catalog(three_days) -> None:
    """A new Spark application reads the table through the catalog, partitions included, no repair."""
    loaded, delivered, result, _ = three_days
    md = materializations(result, "flights")[0].metadata
    assert md["catalog_table"].value == "nycflights13.flights"
    out = helpers.through_catalog(
        loaded,
        'print("COUNT", spark.table("nycflights13.flights").count())\n'
        'print("PARTITIONS", [r[0] for r in spark.sql("SHOW PARTITIONS nycflights13.flights").collect()])',
    )
    assert f"COUNT {sum(delivered.values())}" in out
    assert f"PARTITIONS {[f'flight_date={d}' for d in delivered]}" in out


@pytest.mark.spark_job  # ALTER TABLE ... ADD COLUMNS through each line's catalog
def test_evolved_columns_reach_a_catalog_table_an_earlier_run_created(tmp_path: Path) -> None:
    """A delivery with a new column (evolution = "add") adds it to the catalog table an earlier run
    created, from the version the audit read: a new application reads it through the catalog."""
    extra = next(k for k in KINDS if k.name == "extra column")
    for day, content in ((day_of(0), CLEAN), (day_of(1), extra.content)):
        folder = tmp_path / "landing" / "events" / day
        folder.mkdir(parents=True)
        (folder / "d.csv").write_bytes(content)
    loaded = load_config_from(str(write_config(tmp_path / "config.toml")), home=tmp_path)
    for day in (day_of(0), day_of(1)):
        assert helpers.materialize_range(loaded, day, day).success
    out = helpers.through_catalog(
        loaded,
        'table = spark.table("corpus.events")\n'
        'print("COLUMNS", table.columns)\n'
        'print("NOTES", sorted(((r[0], r[1]) for r in table.select("id", "note").collect()), key=str))',
    )
    assert "COLUMNS ['id', 'name', 'amount', 'ts', 'row_hash', 'load_date', 'note', 'event_date']" in out
    assert "NOTES [(1, 'hi'), (1, None), (2, None), (3, None)]" in out


def test_the_cli_expects_what_the_run_will_read_before_it_exists(tmp_path: Path) -> None:
    """``expected_input`` sizes the application started ahead of a run by its spec's rule: the files
    delivered for the days; a database extract, not made yet, as 0; unknown when the run reads what
    earlier runs wrote (a derived table alone, or loads without their dumps)."""
    loaded, _ = demo_lake(tmp_path, START, END)
    days = [START, "2013-01-02", END]
    flights = sum(f.stat().st_size for f in (Path(loaded.input_path) / "flights").rglob("*") if f.is_file())
    assert flights > 0
    assert expected_input(loaded, days, ["flights"], dumps=True) == flights
    assert expected_input(loaded, days, ["flights", "airlines"], dumps=True) == flights
    assert expected_input(loaded, days[:1], ["flights"], dumps=True) < flights
    everything = [*loaded.config.tables, "daily_carrier_delays"]
    assert expected_input(loaded, days, everything, dumps=True) == flights
    assert expected_input(loaded, days, ["daily_carrier_delays"], dumps=True) is None
    assert expected_input(loaded, days, ["flights"], dumps=False) is None


@dataclass
class Started:
    """The spark-submits the local launcher started (each a Spark application), in order, and for
    each how many of those before it were still running when it started."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    running_before: list[int] = field(default_factory=list)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    seen, spawn = Started(), local.spawn

    def counted(command: list[str], env: Any) -> subprocess.Popen[bytes]:
        seen.running_before.append(sum(p.poll() is None for p in seen.processes))
        seen.processes.append(spawn(command, env))
        return seen.processes[-1]

    monkeypatch.setattr(local, "spawn", counted)
    return seen


@pytest.mark.spark_job
def test_an_application_started_ahead_for_other_settings_is_replaced(
    tmp_path: Path, started: Started
) -> None:
    """The CLI starts the run's application ahead of the run (``warm_spark``); a run whose spec asks
    for another JVM stops it and starts its own, so one application ran the run and none is left."""
    loaded, _ = demo_lake(tmp_path, START, START)
    defs = build_definitions(loaded)
    launcher = defs.resources["spark"]
    with dg.instance_for_test() as instance:
        with launcher.warm_start(quick_jit=False):  # the day is small: its run asks for the quick JIT
            summary = run_range(loaded, dt.date(2013, 1, 1), dt.date(2013, 1, 1), instance, ["flights"], defs)
        assert summary.ok, summary.render()
        logs = [e.user_message for e in instance.all_logs(summary.run_id)]
    ahead, own = started.processes
    assert started.running_before == [0, 0]  # the one ahead was stopped before the step started its own
    assert ahead.returncode is not None and own.returncode == 0
    assert any("the quick JIT compiler only (a small run)" in m and "ahead" not in m for m in logs)
    assert any("spark: Spark" in m and "started in" in m and "ahead" not in m for m in logs), logs


@pytest.mark.spark_job
def test_a_run_takes_over_the_application_started_ahead_of_it(tmp_path: Path, started: Started) -> None:
    loaded, _ = demo_lake(tmp_path, START, START)
    defs = build_definitions(loaded)
    with dg.instance_for_test() as instance:
        with warm_spark(loaded, defs, [START], ["flights"], dumps=True):
            summary = run_range(loaded, dt.date(2013, 1, 1), dt.date(2013, 1, 1), instance, ["flights"], defs)
        assert summary.ok, summary.render()
        logs = [e.user_message for e in instance.all_logs(summary.run_id)]
    (application,) = started.processes
    assert application.returncode == 0
    assert any("the quick JIT compiler only (a small run); started ahead of the run" in m for m in logs)
    assert any("spark: Spark" in m and "ahead of the run, which took it over" in m for m in logs), logs
