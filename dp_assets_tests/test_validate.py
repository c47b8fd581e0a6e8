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
