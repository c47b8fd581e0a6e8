"""Validation runs load nothing and catch what would break a nightly load: upstream columns dropped or
retyped (real PostgreSQL), SQL that does not parse, reads a missing column, loops, or does not plan in
Spark; each finding names the table, file and column."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from dp_assets.cli import main
from dp_assets.config.loader import load_config_from
from dp_assets.definitions import VALIDATE_JOB, build_definitions
from dp_assets.validate import local_spark, validate

CONFIG = """
[general]
pipeline_name = "shop"
input_path = "landing"
output_path = "lake"
start_date = 2024-03-01

[tables.orders]
partition_column = "order_date"
key = ["id"]
source = {{ kind = "postgres", dsn_env = "DP_TEST_SHOP_DSN", schema = "{schema}", table = "orders" }}
columns = [
  {{ name = "id", type = "int", nullable = false }},
  {{ name = "amount", type = "double" }},
  {{ name = "status", type = "string" }},
]
"""
GOOD_SQL = "SELECT order_date, status, sum(amount) AS total FROM orders GROUP BY order_date, status"


@pytest.fixture(scope="module")
def spark():
    return local_spark(ansi=True)


@pytest.fixture
def shop(pg_schema, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, isolated_home: Path):
    pg_schema.execute("CREATE TABLE {s}.orders (id integer, amount double precision, status text, note text)")
    monkeypatch.setenv("DP_TEST_SHOP_DSN", postgres_dsn)
    (isolated_home / "transforms").mkdir()
    (isolated_home / "transforms" / "totals.sql").write_text(GOOD_SQL)
    config = isolated_home / "shop.toml"
    config.write_text(CONFIG.format(schema=pg_schema.name))
    return config, pg_schema.execute


def _findings(config: Path, spark) -> list:
    return validate(load_config_from(str(config), home=config.parent), spark)


def test_clean_designs_pass_with_extra_upstream_column_as_warning(shop, spark, capsys) -> None:
    config, _ = shop
    (finding,) = _findings(config, spark)
    assert (finding.severity, finding.table, finding.column) == ("warning", "orders", "note")
    assert main(["validate", "--config-s3", str(config)]) == 0
    assert "0 error(s), 1 warning(s)" in capsys.readouterr().out


def test_column_dropped_upstream_is_an_error(shop, spark, capsys) -> None:
    config, alter = shop
    alter("ALTER TABLE {s}.orders DROP COLUMN status")
    errors = [f for f in _findings(config, spark) if f.severity == "error"]
    assert [(f.check, f.table, f.column) for f in errors] == [("upstream_columns", "orders", "status")]
    assert "missing upstream" in errors[0].message and ".orders on " in errors[0].message
    assert main(["validate", "--config-s3", str(config)]) == 1
    assert "ERROR   upstream_columns       orders status" in capsys.readouterr().out


def test_column_type_changed_upstream_is_an_error(shop, spark) -> None:
    config, alter = shop
    alter("ALTER TABLE {s}.orders ALTER COLUMN amount TYPE text")
    (error,) = [f for f in _findings(config, spark) if f.severity == "error"]
    assert (error.check, error.table, error.column) == ("upstream_types", "orders", "amount")
    assert "is text upstream" in error.message and "declares double" in error.message


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"totals.sql": "SELECT order_date, FROM orders WHERE"}, ["totals.sql", "syntax error"]),
        ({"totals.sql": "SELECT order_date, amout FROM orders"}, ["totals.sql", "amout", "orders"]),
        (
            {"totals.sql": "SELECT order_date FROM loop_b", "loop_b.sql": "SELECT order_date FROM totals"},
            ["cycle", "totals.sql", "loop_b.sql"],
        ),
        # sqlglot cannot know Spark's functions: only planning in Spark catches this one
        (
            {"totals.sql": "SELECT order_date, no_such_fn(amount) AS x FROM orders"},
            ["totals.sql", "no_such_fn"],
        ),
    ],
    ids=["syntax error", "missing column", "cycle", "does not plan in Spark"],
)
def test_broken_sql_is_an_error_naming_file_and_column(shop, spark, files, expected) -> None:
    config, _ = shop
    folder = config.parent / "transforms"
    for name, text in files.items():
        (folder / name).write_text(text)
    errors = [f for f in _findings(config, spark) if f.severity == "error"]
    assert len(errors) == 1, errors
    text = f"{errors[0].file} {errors[0].message}"
    for word in expected:
        assert word in text, (word, text)


@pytest.mark.parametrize("ansi", [True, False])
def test_sql_is_planned_with_the_configured_ansi_mode(shop, ansi: bool) -> None:
    """CAST(date AS INT) is an analysis error under ANSI (Spark 4's default, pinned by dp everywhere)
    and plans without it: `dp validate` must plan with the mode the jobs will run with."""
    config, _ = shop
    (config.parent / "transforms" / "totals.sql").write_text(
        "SELECT order_date, CAST(order_date AS INT) AS day_number FROM orders"
    )
    config.write_text(config.read_text() + f"\n[spark]\nansi = {str(ansi).lower()}\n")
    loaded = load_config_from(str(config), home=config.parent)
    errors = [f for f in validate(loaded, local_spark(loaded.config.spark.ansi)) if f.severity == "error"]
    if ansi:
        (error,) = errors
        assert (error.check, Path(error.file or "").name) == ("sql_plans", "totals.sql")
        assert 'cannot cast "DATE" to "INT"' in error.message
    else:
        assert errors == []


def test_validation_job_fails_with_the_findings(shop) -> None:
    config, alter = shop
    alter("ALTER TABLE {s}.orders DROP COLUMN status")
    defs = build_definitions(load_config_from(str(config), home=config.parent))
    result = defs.resolve_job_def(VALIDATE_JOB).execute_in_process(
        resources=defs.resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "orders status" in failure.step_failure_data.user_failure_data.description


def _delivery(tmp_path: Path, file_format: str, name: str, content: bytes) -> list:
    """The corpus table `events` (id int, name string, amount double, ts timestamp) in the given
    format, with one delivered file."""
    from dp_assets_tests.bad_inputs import write_config

    config = write_config(tmp_path / "config.toml")
    config.write_text(
        config.read_text().replace('prefix = "events"', f'prefix = "events", format = "{file_format}"')
    )
    folder = tmp_path / "landing" / "events" / "2024-01-01"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    return config


def _parquet(**columns: list) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("file_format", "name", "content", "severity", "column", "said"),
    [
        (
            "csv",
            "d.csv",
            b"id,name,amount,ts\n1,a,1.5,2024-01-01 10:00:00\n2,b,2.5,yesterday\n3,c,,2024-01-01 11:00:00\n",
            "warning",
            "ts",
            "1 of the 3 value(s) of column 'ts' in the first 3 record(s)",
        ),
        (
            "csv",
            "d.csv.gz",
            __import__("gzip").compress(b"id,name,amount,ts\n1,a,cheap,2024-01-01 10:00:00\n2,b,dear,\n"),
            "error",
            "amount",
            "none of its 2 value(s) in the first 2 record(s)",
        ),
        (
            "jsonl",
            "d.jsonl",
            b'{"id": {"n": 1}, "name": "a"}\n{"id": 2.5, "name": "b"}\n',
            "error",
            "id",
            "declared int, but none of its 2 value(s)",
        ),
        (
            "parquet",
            "d.parquet",
            _parquet(id=[1, 2], name=["a", "b"], amount=[1.0, 2.0], ts=["2024-01-01", "soon"]),
            "warning",
            "ts",
            "not a valid timestamp (first at row 2: 'soon')",
        ),
    ],
    ids=["csv, some values", "gzip csv, every value", "jsonl, nested and fractional", "parquet row"],
)
def test_delivered_values_are_cast_to_the_declared_types(
    tmp_path: Path, spark, file_format: str, name: str, content: bytes, severity: str, column: str, said: str
) -> None:
    config = _delivery(tmp_path, file_format, name, content)
    findings = [f for f in _findings(config, spark) if f.check == "delivered_types"]
    (finding,) = findings
    assert (finding.severity, finding.column, finding.file) == (severity, column, f"events/2024-01-01/{name}")
    assert said in finding.message, finding.message


@pytest.mark.parametrize("name", ["big.csv", "big.csv.gz"])
def test_a_large_delivery_is_sampled_without_its_cut_record(tmp_path: Path, spark, name: str) -> None:
    """Only the first MiB of the content is read (of a compressed file, once decompressed); the
    record the cut breaks is left out of the count."""
    import gzip

    from dp_assets.validate import SAMPLE_BYTES

    header = b"id,name,amount,ts\n"
    line = b"%07d,n,abc,2024-01-01 10:00:00\n"
    whole = (SAMPLE_BYTES - len(header)) // len(line % 0)
    assert (SAMPLE_BYTES - len(header)) % len(line % 0), "the cut must fall inside a record"
    content = header + b"".join(line % i for i in range(whole * 3))
    config = _delivery(tmp_path, "csv", name, gzip.compress(content) if name.endswith(".gz") else content)
    (finding,) = [f for f in _findings(config, spark) if f.check == "delivered_types"]
    assert f"none of its {whole} value(s) in the first {whole} record(s)" in finding.message


def test_without_spark_the_report_says_what_was_not_checked(tmp_path: Path) -> None:
    from dp_assets.validate import report

    config = _delivery(tmp_path, "csv", "d.csv", b"id,name,amount,ts\n1,a,cheap,x\n")
    loaded = load_config_from(str(config), home=tmp_path)
    findings = validate(loaded, None)
    assert findings == []  # the fields match; the values were not cast
    assert report(findings, loaded, with_spark=False).splitlines()[-1] == (
        "not checked (--no-spark): delivered values against declared types, SQL in Spark"
    )


def test_a_parquet_delivery_is_sampled_by_rows(tmp_path: Path, spark) -> None:
    from dp_assets.validate import SAMPLE_ROWS

    rows = SAMPLE_ROWS * 3
    content = _parquet(
        id=list(range(rows)), name=["n"] * rows, amount=["cheap"] * rows, ts=["2024-01-01"] * rows
    )
    config = _delivery(tmp_path, "parquet", "d.parquet", content)
    (finding,) = [f for f in _findings(config, spark) if f.check == "delivered_types"]
    assert f"none of its {SAMPLE_ROWS} value(s) in the first {SAMPLE_ROWS} record(s)" in finding.message


@pytest.mark.parametrize(
    ("file_format", "content", "severity", "said", "first"),
    [
        (
            "csv",
            b"id,name,amount,ts\n1,a,1.5,2024-01-01 10:00:00\n2,b\n3,c,3.5,2024-01-01 11:00:00,extra\n",
            "warning",
            "2 of the first 3 record(s)",
            "(first at line 3: expected 4 fields, got 2)",
        ),
        (
            "jsonl",
            b'{"id": 1, "name": "a"\n[1, 2]\n',
            "error",
            "2 of the first 2 record(s)",
            "(first at line 1: not valid JSON",
        ),
    ],
    ids=["csv field counts", "jsonl, nothing readable"],
)
def test_records_the_parser_rejects_are_named(
    tmp_path: Path, file_format: str, content: bytes, severity: str, said: str, first: str
) -> None:
    config = _delivery(tmp_path, file_format, f"d.{file_format}", content)
    (finding,) = [f for f in _findings(config, None) if f.check == "delivered_records"]
    assert (finding.severity, finding.file) == (severity, f"events/2024-01-01/d.{file_format}")
    assert said in finding.message and first in finding.message, finding.message
