"""Derived tables from SQL files: upstream assets inferred from the SQL, computed by Spark over the
run's days only, with column lineage; broken SQL stops the definitions with the file named."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dp_assets.config.loader import ConfigError, load_config_from
from dp_assets.definitions import build_definitions
from dp_assets.demo import seed_dimensions, write_flight_deliveries
from dp_assets.lake import Lake, published_folders
from dp_assets_tests.conftest import packaged_text
from dp_assets_tests.helpers import (
    checks_by_asset,
    demo_lake,
    materializations,
    materialize_range,
    range_tags,
    read_table,
)

# The tests marked spark_job run again on each EMR Spark line (.ci/run): those that take the SQL
# through Spark. Holding back and overriding are the orchestrator's, the same on every line.

START, END = "2013-01-01", "2013-01-02"
DERIVED = "daily_carrier_delays"


@pytest.fixture(scope="module")
def derived_run(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str):
    home = tmp_path_factory.mktemp("derived")
    seed_dimensions(postgres_dsn)
    loaded, delivered = demo_lake(home, START, END)
    defs = build_definitions(loaded)
    keys = [dg.AssetKey(k) for k in (["raw", "flights"], "flights", ["raw", "airlines"], "airlines", DERIVED)]
    result = dg.materialize(
        list(defs.assets),  # type: ignore[arg-type]
        selection=keys,
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        tags=range_tags(START, END),
    )
    return loaded, delivered, result, defs


@pytest.mark.spark_job
def test_upstream_assets_are_inferred_from_the_sql(derived_run) -> None:
    *_, defs = derived_run
    node = defs.resolve_asset_graph().get(dg.AssetKey(DERIVED))
    assert node.parent_keys == {dg.AssetKey("flights"), dg.AssetKey("airlines")}
    lineage = defs.resolve_assets_def(DERIVED).metadata_by_key[dg.AssetKey(DERIVED)]["dagster/column_lineage"]
    assert lineage.deps_by_column["airline"] == [dg.TableColumnDep(dg.AssetKey("airlines"), "name")]
    assert lineage.deps_by_column["avg_dep_delay"] == [dg.TableColumnDep(dg.AssetKey("flights"), "dep_delay")]


@pytest.mark.spark_job
def test_derived_rows_match_the_sql_over_the_loaded_tables(derived_run) -> None:
    loaded, delivered, result, _ = derived_run
    assert result.success
    out = Path(loaded.output_path)
    got = read_table(out / DERIVED).to_table().to_pylist()
    db = duckdb.connect()
    db.register("flights", read_table(out / "flights").to_table())
    db.register("airlines", read_table(out / "airlines").to_table())
    expected = db.sql(
        "SELECT CAST(f.flight_date AS VARCHAR) AS d, f.carrier, a.name AS airline, count(*) AS n, "
        "avg(f.dep_delay) AS avg_dep FROM flights f LEFT JOIN airlines a "
        "ON a.carrier = f.carrier AND a.snapshot_date = f.flight_date GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    rows = sorted(
        (str(r["flight_date"]), r["carrier"], r["airline"], r["departures"], r["avg_dep_delay"]) for r in got
    )
    assert [r[:4] for r in rows] == [e[:4] for e in expected]
    assert all(abs((r[4] or 0) - (e[4] or 0)) < 1e-9 for r, e in zip(rows, expected, strict=True))
    assert sum(r[3] for r in rows) == sum(delivered.values())
    assert {r[2] for r in rows} >= {"United Air Lines Inc.", "JetBlue Airways"}  # the join found names
    mats = {m.partition: m.metadata for m in materializations(result, DERIVED)}
    per_day = {d: sum(1 for r in rows if r[0] == d) for d in delivered}
    assert {d: md["dagster/row_count"].value for d, md in mats.items()} == per_day
    totals = mats[START]["range_totals"].value
    assert totals["rows_outside_range"] == 0 and totals["partitions"] == 2 and totals["rows"] == len(rows)
    assert all(md["bytes"].value > 0 for md in mats.values())  # each day's own size
    assert mats[START]["catalog_table"].value == f"nycflights13.{DERIVED}"
    assert mats[START]["catalog_partitions"].value == [START, END]
    derived_checks = {c: ok for (a, c), ok in checks_by_asset(result).items() if a == DERIVED}
    assert derived_checks == {"schema_matches_sql": True, "key_unique": True, "row_accounting": True}
    assert mats[START]["stats/max_dep_delay/max"].value == max(
        r["max_dep_delay"] for r in got if str(r["flight_date"]) == START
    )


def _config_with_sql(tmp_path: Path, files: dict[str, str]) -> Path:
    config = tmp_path / "pipeline.toml"
    config.write_text(packaged_text())
    folder = tmp_path / "transforms"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return config


def test_a_cycle_stops_the_definitions_naming_the_files(tmp_path: Path) -> None:
    config = _config_with_sql(
        tmp_path, {"a.sql": "SELECT flight_date FROM b", "b.sql": "SELECT flight_date FROM a"}
    )
    with pytest.raises(ConfigError, match=r"a\.sql -> .*b\.sql -> .*a\.sql"):
        build_definitions(load_config_from(str(config), home=tmp_path))


def test_an_unknown_table_or_column_stops_the_definitions(tmp_path: Path) -> None:
    config = _config_with_sql(tmp_path, {"x.sql": "SELECT flight_date, carrier FROM flightz"})
    with pytest.raises(ConfigError, match=r"x\.sql.*unknown table.*flightz"):
        build_definitions(load_config_from(str(config), home=tmp_path))
    shutil.rmtree(tmp_path / "transforms")
    config = _config_with_sql(tmp_path, {"y.sql": "SELECT flight_date, dep_dly FROM flights"})
    with pytest.raises(ConfigError, match=r"y\.sql.*dep_dly"):
        build_definitions(load_config_from(str(config), home=tmp_path))


def test_a_derived_table_whose_key_repeats_is_held_back_until_published_by_override(tmp_path: Path) -> None:
    """Write, audit, publish for derived tables: a declared key that repeats within a day fails
    key_unique, nothing is published, the version is kept; the override publishes exactly it."""
    sql = "SELECT flight_date, carrier, count(*) AS n FROM flights GROUP BY flight_date, carrier"
    config = _config_with_sql(tmp_path, {"carrier_days.sql": sql})
    config.write_text(config.read_text() + '\n[derived.carrier_days]\nkey = ["flight_date"]\n')
    loaded = load_config_from(str(config), home=tmp_path)
    write_flight_deliveries(Lake(loaded), dt.date(2013, 1, 1), dt.date(2013, 1, 1))
    held = materialize_range(loaded, START, START, tables=("flights",), derived=("carrier_days",))
    assert not held.success and materializations(held, "flights")
    assert not materializations(held, "carrier_days")
    assert checks_by_asset(held)[("carrier_days", "key_unique")] is False
    assert checks_by_asset(held)[("carrier_days", "row_accounting")] is True
    table = Path(loaded.output_path) / "carrier_days"
    rejected = table / "_rejected" / held.run_id
    assert read_table(rejected).to_table().num_rows > 1 and published_folders(table) == {}

    published = materialize_range(
        loaded, START, START, tables=(), derived=("carrier_days",), publish_rejected=held.run_id
    )
    assert published.success and not rejected.exists()
    (mat,) = materializations(published, "carrier_days")
    assert mat.metadata["dagster/row_count"].value == read_table(table).to_table().num_rows > 1
    assert mat.metadata["catalog_partitions"].value == [START]
    (warning,) = [e for e in published.get_asset_check_evaluations() if e.check_name == "key_unique"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
