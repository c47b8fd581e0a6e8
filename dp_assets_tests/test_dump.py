"""The dump's own mechanics: a range's files worked on side by side, and what a failure leaves."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
import sys
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from dp_assets.config.loader import PACKAGED, load_config_from
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets.stages.dump import dump_partitions, scan_policy
from spark_jobs.contract import LINE, REASON, SOURCE
from spark_jobs.dumping import deliveries
from spark_jobs.dumping.deliveries import (
    MAX_TASK_BYTES,
    TableDump,
    dump_days,
    on_executors,
    pack,
    staged_name,
)
from spark_jobs.dumping.parts import LineCuts
from spark_jobs.storage import S3Store

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_failure_leaves_the_days_without_a_new_manifest_not_dumped(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No raw or staged files and no first-delivery marks stay behind a failed dump: the next run
    dumps those days as new (a mark without staged rows would make their content a duplicate)."""
    loaded = load_config_from(PACKAGED, home=isolated_home)
    lake = Lake(loaded)
    write_flight_deliveries(lake, dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    stage_file = deliveries.stage_file

    def failing(open_raw, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if "2013-01-02" in name:
            raise OSError(f"disk full while staging {name}")
        return stage_file(open_raw, name, *args, **kwargs)

    monkeypatch.setattr(deliveries, "stage_file", failing)
    with pytest.raises(OSError, match="disk full"):
        dump_partitions(lake, "flights", DAYS)
    raw_root = Path(lake.uri(lake.raw_root("flights")))
    assert files_under(raw_root) == [] and files_under(Path(lake.uri(lake.staged_root("flights")))) == []

    monkeypatch.setattr(deliveries, "stage_file", stage_file)
    manifests = dump_partitions(lake, "flights", DAYS)
    assert [m["duplicates"] for m in manifests.values()] == [[], [], []]
    assert all(m["rows"] > 0 for m in manifests.values())


def test_staged_names_are_flat_and_distinct() -> None:
    assert staged_name("flights.csv") == "flights.csv"
    nested, flat = staged_name("a/b.csv"), staged_name("a__b.csv")
    assert "/" not in nested and nested != flat and nested.startswith("a__b.csv.")


def staged_tables(dump: TableDump, days: list[str]) -> dict[str, Any]:
    """Each staged file's rows, by day and name."""
    out = {}
    for day in days:
        for f in dump.store.list(dump.staged_prefix(day)):
            with dump.store.open_read(f.path) as body:
                out[f"{day}/{f.path.rsplit('/', 1)[-1]}"] = pq.read_table(io.BytesIO(body.read())).to_pylist()
    return out


def staged_rows(dump: TableDump, days: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each day's staged rows, in line order, whatever files they were staged to."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, table in staged_tables(dump, days).items():
        rows.setdefault(name.split("/", 1)[0], []).extend(table)
    return {day: sorted(r, key=lambda row: (row[SOURCE], row[LINE])) for day, r in rows.items()}


def test_a_large_csv_file_is_staged_in_parts_as_it_is_whole(isolated_home: Path) -> None:
    """A CSV file is cut after a record's newline every ``part_bytes`` while it is copied, never
    inside a quoted value, and its parts are parsed and scanned side by side: the staged rows (line
    numbers included), the manifests and the scan are the whole file's. A file whose parts meet
    what only the whole file's parse can tell (an anomaly, a literal quote that makes the cuts
    unsure, a part of blank lines) is parsed whole, as is one scanned by a sample or masked."""
    days = [f"2013-01-0{n}" for n in range(1, 9)]
    loaded = load_config_from(PACKAGED, home=isolated_home)
    lake = Lake(loaded)
    write_flight_deliveries(lake, dt.date(2013, 1, 1), dt.date(2013, 1, 8))
    landing = Path(lake.landing.root)  # type: ignore[attr-defined]
    delivered = sorted(landing.rglob("*.csv"))
    text = [f.read_text() for f in delivered]
    lines = text[1].splitlines(keepends=True)
    lines[700] = "2013,1,2,too,few,fields\n"  # in a later part: its day is parsed whole
    text[1] = "".join(lines)
    text[2] = text[2].replace(",UA,", ',"U\nA",')  # values across lines, all along: cut between them
    # A literal quote at a value's end (pyarrow reads 'Monitor 27"' as is) puts the quote count off
    # by one, so the cut falls inside the later value across lines, where both halves still parse
    # into two fields: the first part's values show the quote, and the day parses whole.
    text[3] = 'year,carrier\n1,Monitor 27"\n' + "2013,UA\n" * 3_500 + '3,"first line\nx,y"\n4,z\n'
    text[4] += "\n" * 30_000  # a part of blank lines: the whole file's parse says where they are
    # Line breaks in values, CRLF: pyarrow may drop a newline after a carriage return that ends its
    # read block (apache/arrow#51368), and a part's blocks are not the file's: parsed whole.
    text[6] = text[6].replace(",UA,", ',"U\r\nA",').replace("Z\n", "Z\r\n")
    filler = "year,carrier\n" + "2013,UA\n" * 2_499  # 20,005 bytes: the first newline past 20,000 ends it
    text[7] = filler + "\ufeffyear,carrier\n" + "2013,AA\n" * 100  # a byte-order mark at a cut
    for f, t in zip(delivered, text, strict=True):
        f.write_text(t)
    policy = scan_policy(loaded, loaded.config.tables["flights"])
    dump = lake.dump("flights")
    listings = {day: dump.landing.list(dump.delivery_prefix(day)) for day in days}

    whole = dump_days(dump, days, listings, policy)
    whole_rows = staged_rows(dump, days)
    in_parts = dataclasses.replace(dump, part_bytes=20_000)
    parted = dump_days(in_parts, days, listings, policy)

    staged = [sorted(f.path.rsplit("/", 1)[-1] for f in dump.store.list(dump.staged_prefix(d))) for d in days]
    rel = "flights_2013-01-01.csv"
    assert staged[0] == [deliveries.staged_path(dump, days[0], rel, n).rsplit("/", 1)[-1] for n in range(4)]
    assert [len(names) for names in staged] == [4, 1, 5, 1, 1, 4, 1, 1], staged
    assert [f.get("parts") for m in parted.values() for f in m["files"]] == [
        4,
        None,
        5,
        None,
        None,
        4,
        None,
        None,
    ]
    assert parted["2013-01-05"]["files"][0]["parser"] == "exact"  # the blank lines
    assert staged_rows(dump, days) == whole_rows
    assert {r["carrier"] for r in whole_rows["2013-01-03"]} >= {"U\nA"}
    assert [r["carrier"] for r in whole_rows["2013-01-04"][-2:]] == ["first line\nx,y", "z"]
    assert whole_rows["2013-01-08"][len(filler.splitlines()) - 1]["year"] == "\ufeffyear"
    assert whole_rows["2013-01-02"][699][REASON] == "expected 19 fields, got 6"
    assert whole_rows["2013-01-02"][699][LINE] == 701

    def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
        files = [{k: v for k, v in f.items() if k != "parts"} for f in manifest["files"]]
        return {**manifest, "dumped_at": None, "files": files}

    assert all(m["rows"] > 0 and m["scan"]["rows_scanned"] == m["rows"] for m in parted.values())
    assert {d: comparable(m) for d, m in parted.items()} == {d: comparable(m) for d, m in whole.items()}

    masked = dataclasses.replace(policy, action="mask")
    assert "parts" not in dump_days(in_parts, days[:1], listings, masked)[days[0]]["files"][0]


def test_a_cut_is_never_inside_a_quoted_value() -> None:
    """Wherever the copy's chunks end, the cuts fall on record boundaries: each part parses into
    whole records that add up to the file's, and says the physical line it starts on."""
    rows = [["id", "text", "z"]]
    values = ["plain", '"quoted" twice', "across\nlines\n", "a,b", ""]
    rows += [[str(n), values[n % len(values)], "z"] for n in range(3000)]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    data = text.getvalue().encode()
    for every in (50, 1000, 5000):
        for chunk in (7, 1000, 1 << 20):
            cuts = LineCuts(every)
            for start in range(0, len(data), chunk):
                cuts.update(data[start : start + chunk])
            parts = cuts.parts(len(data))
            assert len(parts) > len(data) // (every + 100), (every, chunk)
            parsed = []
            for part in parts:
                assert part.first_line == data[: part.start].count(b"\n") + 1
                parsed += list(csv.reader(io.StringIO(data[part.start : part.end].decode(), newline="")))
            assert parsed == rows, (every, chunk)
    for uncuttable in (
        b"\x1f\x8b" + data,
        data.replace(b"\n", b"\r"),
        data + b"\r",
        data[:99] + b"\r" + data[99:],
    ):
        cuts = LineCuts(10)
        cuts.update(uncuttable[:100])  # a carriage return at a chunk's end, then none after it
        cuts.update(uncuttable[100:])
        assert cuts.parts(len(uncuttable)) == [], uncuttable[:120]
    crlf = LineCuts(100)
    crlf.update(data[:99].replace(b"\n", b"\r\n") + b"\r")
    crlf.update(b"\n" + data[100:].replace(b"\n", b"\r\n"))
    assert crlf.parts(len(data) * 2)


def test_files_pack_into_tasks_as_spark_packs_a_scan() -> None:
    """Small files share a task (a day of them would otherwise pay a task each), a file past a
    split's bytes has a task to itself, every core gets work, and the order is kept."""
    small = [f"small-{n}" for n in range(31)]
    groups = pack(small, [2_000] * 31, cores=2)
    assert [f for g in groups for f in g] == small
    assert 2 <= len(groups) <= 4, groups  # about a split per core: 31 small files, 2 cores

    big = ["a", "b", "tiny", "c"]
    sizes = [3 * MAX_TASK_BYTES, MAX_TASK_BYTES, 10, 2 * MAX_TASK_BYTES]
    assert pack(big, sizes, cores=64) == [["a"], ["b"], ["tiny"], ["c"]]  # split = MAX_TASK_BYTES
    assert pack(["only"], [0], cores=8) == [["only"]]


def test_the_work_on_bytes_runs_on_spark_executors_as_on_threads(aws: str, isolated_home: Path) -> None:
    """Mapped on a Spark application's executors (the stores pickled to its Python workers, S3 on
    moto over HTTP), the dump's copy, parse and scan write what threads write: the same manifests
    and staged rows, also when the files are parsed in parts (ranged GETs)."""
    from pyspark.sql import SparkSession

    loaded = load_config_from(PACKAGED, home=isolated_home)
    lake = Lake(loaded)
    write_flight_deliveries(lake, dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    policy = scan_policy(loaded, loaded.config.tables["flights"])
    on_threads = dump_partitions(lake, "flights", DAYS, policy)

    s3 = boto3.client("s3")
    for bucket in ("landing", "lake"):
        s3.create_bucket(Bucket=bucket)
    local = lake.dump("flights")
    for day in DAYS:
        for f in lake.landing.list(local.delivery_prefix(day)):
            with lake.landing.open_read(f.path) as body:
                s3.put_object(Bucket="landing", Key=f"drops/{f.path}", Body=body.read())
    remote = dataclasses.replace(
        local, landing=S3Store("s3://landing/drops"), store=S3Store("s3://lake/zone"), part_bytes=30_000
    )
    listings = {day: remote.landing.list(remote.delivery_prefix(day)) for day in DAYS}
    builder = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.pyspark.python", sys.executable)
    )
    for key in [k for k in os.environ if k.startswith("AWS_")]:  # moto, as a cluster's workers reach S3
        builder = builder.config(f"spark.executorEnv.{key}", os.environ[key])  # (an earlier JVM lacks them)
    spark = builder.getOrCreate()
    try:
        on_spark = dump_days(remote, DAYS, listings, policy, map_work=on_executors(spark.sparkContext))
    finally:
        spark.stop()

    def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
        files = [{**f, "source": None, "parts": None} for f in manifest["files"]]
        return {**manifest, "dumped_at": None, "files": files}

    assert all(m["rows"] > 0 and "scan" in m for m in on_spark.values())
    assert [f["parts"] for m in on_spark.values() for f in m["files"]] == [3, 3, 3]
    assert staged_rows(remote, DAYS) == staged_rows(local, DAYS)
    assert {d: comparable(m) for d, m in on_spark.items()} == {
        d: comparable(m) for d, m in on_threads.items()
    }
