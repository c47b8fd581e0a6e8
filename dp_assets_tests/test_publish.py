"""A load killed (SIGKILL) at any point leaves each partition old or new, never mixed, for readers
going by the lake and for readers going through the catalog; the next load finishes the work (even
after a kill during that recovery) and the content is identical to an uninterrupted load."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from dp_assets.lake import Lake, published_folders
from dp_assets_tests.helpers import (
    demo_lake,
    materializations,
    materialize_range,
    through_catalog,
    unreferenced_versions,
)

START, END = "2013-01-01", "2013-01-03"
DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]
DROPPED = 10  # version B of each delivery lacks its last 10 rows


def load(loaded, kill_at: str | None, monkeypatch: pytest.MonkeyPatch) -> dg.ExecuteInProcessResult:
    if kill_at:
        monkeypatch.setenv("DP_FAULT_KILL_AT", kill_at)
    else:
        monkeypatch.delenv("DP_FAULT_KILL_AT", raising=False)
    return materialize_range(loaded, START, END)


def hashes(loaded, day: str) -> list[str]:
    """The day's row hashes as a reader going by the lake reads them."""
    folder = published_folders(Path(loaded.output_path) / "flights").get(day)
    return sorted(pq.read_table(folder, columns=["row_hash"])["row_hash"].to_pylist()) if folder else []


def catalog_hashes(loaded) -> dict[str, list[str]]:
    """Each day's row hashes as a new Spark application reads them through the catalog."""
    query = "SELECT CAST(flight_date AS STRING) AS day, sort_array(collect_list(row_hash)) AS h "
    query += "FROM nycflights13.flights GROUP BY flight_date"
    body = f"import json\nprint('DAYS', json.dumps({{r.day: r.h for r in spark.sql({query!r}).collect()}}))"
    return json.loads(through_catalog(loaded, body).split("DAYS ", 1)[1])


def test_killed_loads_never_leave_a_mixed_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, _ = demo_lake(tmp_path, START, END)
    lake = Lake(loaded)
    files = {d: Path(lake.landing.uri(lake.delivery_prefix("flights", d))) / f"flights_{d}.csv" for d in DAYS}
    version_a = {d: f.read_bytes() for d, f in files.items()}

    def deliver(version: str) -> None:
        for d, f in files.items():
            lines = version_a[d].splitlines(keepends=True)
            f.write_bytes(b"".join(lines if version == "A" else lines[:-DROPPED]))

    assert load(loaded, None, monkeypatch).success
    a = {d: hashes(loaded, d) for d in DAYS}

    def state(now: dict[str, list[str]]) -> list[str]:
        out = []
        for d in DAYS:
            if now[d] == a[d]:
                out.append("A")
            elif (
                len(now[d]) == len(a[d]) - DROPPED
                and set(now[d]) <= set(a[d])
                and len(set(now[d])) == len(now[d])
            ):
                out.append("B")
            else:
                out.append(f"MIXED({len(now[d])} rows)")
        return out

    def lake_state() -> list[str]:
        return state({d: hashes(loaded, d) for d in DAYS})

    deliver("B")
    observed = {}
    for kill_at in ("loaded_written", "version_written", "lake_switched#2"):
        result = load(loaded, kill_at, monkeypatch)
        assert not result.success, kill_at
        observed[kill_at] = lake_state()
    assert observed == {
        "loaded_written": ["A", "A", "A"],  # killed while writing its version: nothing published
        "version_written": ["A", "A", "A"],  # written, not journaled: nothing published
        "lake_switched#2": ["B", "B", "B"],  # the table's pointer (after its quarantine's) switched all days
    }
    # That kill left the catalog behind (the lake_switched journal). The next run finishes the switch
    # first, and is killed right after the catalog's switch: one Hive (Derby) transaction moved every day.
    assert state(catalog_hashes(loaded)) == ["A", "A", "A"]
    assert not load(loaded, "catalog_switched", monkeypatch).success
    assert lake_state() == ["B", "B", "B"]
    assert state(catalog_hashes(loaded)) == ["B", "B", "B"]

    deliver("A")
    assert not load(loaded, "journal_written", monkeypatch).success
    # That run first finished the lake_switched journal (all B), then died after journaling A.
    assert lake_state() == ["B", "B", "B"]

    final = load(loaded, None, monkeypatch)
    assert final.success
    assert lake_state() == ["A", "A", "A"]
    assert {d: hashes(loaded, d) for d in DAYS} == a  # identical rows and row hashes
    assert catalog_hashes(loaded) == a  # the catalog reads the same
    recovered = materializations(final, "flights")[0].metadata["recovered_publishes"].value
    assert len(recovered) == 1  # the journal_written run's publish, rolled forward
    table = Path(loaded.output_path) / "flights"
    assert list((table / "_publish").glob("*")) == []  # every journal applied
    assert unreferenced_versions(table) == []  # what killed runs wrote and never published is gone


def test_an_override_killed_while_moving_its_version_back_publishes_it_whole(tmp_path: Path) -> None:
    """On S3 a folder rename copies file by file: a kill in the middle leaves the reviewed version
    partly copied. The publish that finishes it moves the rest file by file, never nesting the
    folder in itself, and points the day at the whole version."""
    from pyspark.sql import SparkSession

    from spark_jobs.lake_io import Hdfs, Publisher

    table, day = tmp_path / "t", "2024-01-01"
    held = table / "_rejected" / "r1" / f"d={day}"
    held.mkdir(parents=True)
    for i in range(3):
        (held / f"part-{i}.parquet").write_text(str(i))
    copied = table / "_versions" / "r1" / f"d={day}"
    copied.mkdir(parents=True)
    (copied / "part-0.parquet").write_text("0")  # the kill came after the first file's copy
    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        Publisher(Hdfs(spark), str(table), "d").publish("r1", [day], from_rejected=True)
    finally:
        spark.stop()
    assert sorted(p.name for p in copied.glob("[!.]*")) == [
        "part-0.parquet",
        "part-1.parquet",
        "part-2.parquet",
    ]
    assert not (table / "_rejected" / "r1").exists() and published_folders(table) == {day: copied}


@pytest.mark.spark_job
def test_the_audit_sees_a_version_s_schema_as_written(tmp_path: Path) -> None:
    """The audit takes a version's schema from a file's footer on the driver (no Spark job), so a
    column written with another type than designed reaches ``schema_matches_design`` as it is; a
    version Spark did not write (no Spark schema in its footers) is read by inference."""
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from spark_jobs.audit import audit

    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        by_spark, by_arrow = tmp_path / "spark", tmp_path / "arrow"
        rows = [(1, "7", "2024-01-01"), (1, "8", "2024-01-01"), (2, None, "2024-01-02")]
        frame = spark.createDataFrame(rows, "id bigint, amount string, d string")
        frame.write.partitionBy("d").parquet(str(by_spark))
        for day in ("2024-01-01", "2024-01-02"):
            (by_arrow / f"d={day}").mkdir(parents=True)
            pq.write_table(pa.table({"id": [1], "amount": [2.5]}), by_arrow / f"d={day}" / "part-0.parquet")
        days = ["2024-01-01", "2024-01-02", "2024-01-03"]  # no rows for the third day
        written = audit(spark, str(by_spark), days, "d", ["id"], ["amount"])
        inferred = audit(spark, str(by_arrow), days, "d", [], [])
    finally:
        spark.stop()
    assert written["schema"] == [("id", "bigint"), ("amount", "string"), ("d", "date")]
    assert {d: s["rows"] for d, s in written["stats"].items()} == {"2024-01-01": 2, "2024-01-02": 1}
    assert (written["nulls"], written["dup_keys"], written["dup_rows"]) == ({"amount": 1}, 1, 2)
    assert inferred["schema"] == [("id", "bigint"), ("amount", "double"), ("d", "date")]
