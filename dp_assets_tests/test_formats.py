"""JSON Lines and Parquet deliveries load in the same run (one Spark application) as the CSV ones,
with the same accounting: the demo's flights delivered three ways load to the same rows, and each
format's broken records are quarantined with their file, line (a Parquet file's row number) and
reason, so rows in = loaded + quarantined."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dp_assets.config.loader import load_config_from
from dp_assets_tests.helpers import (
    checks_by_asset,
    demo_lake,
    materializations,
    materialize_range,
    read_table,
)

pytestmark = pytest.mark.spark_job  # also run on each EMR Spark line (.ci/run)

CLEAN_DAY, BROKEN_DAY = "2013-01-01", "2013-01-02"
FORMATS = {"flights_jsonl": ("jsonl", "jsonl"), "flights_parquet": ("parquet", "parquet")}


def flights_of(home: Path, day: str) -> pa.Table:
    """The demo's CSV delivery of the day, as typed Arrow rows."""
    path = home / "landing" / "flights" / day / f"flights_{day}.csv"
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(null_values=["NA"]))


def as_jsonl(table: pa.Table) -> bytes:
    return "".join(json.dumps(r, default=str) + "\n" for r in table.to_pylist()).encode()


def as_parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def deliver(home: Path, table: str, day: str, name: str, content: bytes) -> None:
    folder = home / "landing" / table / day
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("formats")
    loaded, _ = demo_lake(home, CLEAN_DAY, BROKEN_DAY)
    text = Path(loaded.provenance.uri).read_text().split("\n[derived.")[0]
    flights = text[text.index("[tables.flights]") : text.index("\n# Dimension tables")]
    for table, (fmt, _) in FORMATS.items():
        copy = flights.replace("[tables.flights]", f"[tables.{table}]")
        copy = copy.replace(
            'source = { prefix = "flights", csv = { null_value = "NA" } }',
            f'source = {{ prefix = "{table}", format = "{fmt}" }}\nquarantine = {{ max_ratio = 1.0 }}',
        )
        assert f'format = "{fmt}"' in copy
        text += "\n" + copy
    (home / "config.toml").write_text(text)
    loaded = load_config_from(str(home / "config.toml"), home=home)

    clean, broken = flights_of(home, CLEAN_DAY), flights_of(home, BROKEN_DAY).slice(0, 3)
    deliver(home, "flights_jsonl", CLEAN_DAY, "flights.jsonl.gz", gzip.compress(as_jsonl(clean)))
    deliver(home, "flights_parquet", CLEAN_DAY, "flights.parquet", as_parquet(clean))
    bad_value = json.loads(as_jsonl(broken.slice(0, 1)))
    bad_value["dep_delay"] = "late"
    deliver(
        home,
        "flights_jsonl",
        BROKEN_DAY,
        "flights.jsonl",
        as_jsonl(broken) + json.dumps(bad_value).encode() + b"\n{not json\n[1, 2]\n",
    )
    as_text = broken.cast(pa.schema([(f.name, pa.string()) for f in broken.schema]))
    late = as_text.slice(0, 1).set_column(5, "dep_delay", pa.array(["late"]))  # a value that does not cast
    deliver(
        home, "flights_parquet", BROKEN_DAY, "flights.parquet", as_parquet(pa.concat_tables([as_text, late]))
    )
    deliver(home, "flights_parquet", BROKEN_DAY, "truncated.parquet", as_parquet(broken)[:-100])
    result = materialize_range(loaded, CLEAN_DAY, BROKEN_DAY, tables=("flights", *FORMATS))
    return loaded, result


def test_the_same_flights_load_the_same_from_csv_json_lines_and_parquet(three_formats) -> None:
    loaded, result = three_formats
    assert result.success
    columns = ["flight_date", "carrier", "flight", "origin", "dep_delay", "tailnum", "time_hour"]
    published = {
        t: sorted(
            (
                tuple(r[c] for c in columns)
                for r in read_table(Path(loaded.output_path) / t).to_table(columns=columns).to_pylist()
                if str(r["flight_date"]) == CLEAN_DAY
            ),
            key=str,
        )
        for t in ("flights", *FORMATS)
    }
    assert len(published["flights"]) == 842
    assert published["flights_jsonl"] == published["flights"]
    assert published["flights_parquet"] == published["flights"]


def test_each_formats_broken_records_are_quarantined_and_counted(three_formats) -> None:
    loaded, result = three_formats
    for table, outcome in {"flights_jsonl": (6, 3, 3), "flights_parquet": (5, 3, 2)}.items():
        metadata = materializations(result, table)[0].metadata
        loaded_rows = metadata["rows_by_partition"].value[BROKEN_DAY]
        quarantined = metadata["quarantined_by_partition"].value[BROKEN_DAY]
        assert (loaded_rows + quarantined, loaded_rows, quarantined) == outcome, table
        assert checks_by_asset(result)[(table, "row_accounting")] is True
    q = {
        (r["_source_file"], r["_line"]): r["_reject_reason"]
        for t in FORMATS
        for r in read_table(Path(loaded.output_path) / "_quarantine" / t).to_table().to_pylist()
    }
    assert q[("flights.jsonl", 4)] == "dep_delay: not a valid double"
    assert q[("flights.jsonl", 5)].startswith("not valid JSON")
    assert q[("flights.jsonl", 6)] == "not a JSON object but list"
    assert q[("flights.parquet", 4)] == "dep_delay: not a valid double"  # row 4 of the file
    assert re.match(r"not a valid Parquet file", q[("truncated.parquet", None)])
