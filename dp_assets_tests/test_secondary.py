"""A secondary environment ([secondary]): every run publishes the same dump into a second lake and
catalog database after the primary, in the same Spark application. What fails there is a warning on
each table's published_to_secondary check; the primary is never failed or rolled back for it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dp_assets.config.loader import LoadedConfig, load_config_from
from dp_assets.runner import summarize
from dp_assets_tests.helpers import demo_lake, materialize_range, read_table, through_catalog
from spark_jobs.contract import SECONDARY_CHECK

DAY = "2013-01-02"
DERIVED = "flights_by_origin"


def with_secondary(home: Path, output_path: str, key: str = '["flight_date", "origin"]') -> LoadedConfig:
    """The packaged config with a derived table over flights and a secondary environment."""
    loaded, _ = demo_lake(home, DAY, DAY)
    (home / "transforms").mkdir()
    (home / "transforms" / f"{DERIVED}.sql").write_text(
        "SELECT flight_date, origin, count(*) AS departures FROM flights GROUP BY flight_date, origin\n"
    )
    config = home / "config.toml"
    text = Path(loaded.provenance.uri).read_text().split("\n[derived.")[0]
    config.write_text(
        text + f"\n[derived.{DERIVED}]\nkey = {key}\n"
        f'\n[secondary]\nname = "preprod"\noutput_path = "{output_path}"\n'
    )
    return load_config_from(str(config), home=home)


def secondary_checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.asset_key.to_user_string(): e
        for e in result.get_asset_check_evaluations()
        if e.check_name == SECONDARY_CHECK
    }


def run(
    loaded: LoadedConfig, tables: tuple[str, ...] = ("flights",), publish_rejected: str | None = None
) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(
        loaded,
        DAY,
        DAY,
        tables=tables,
        derived=(DERIVED,),
        instance=instance,
        publish_rejected=publish_rejected,
    )
    return result, instance


def test_each_run_publishes_the_same_days_into_the_secondary_lake_and_catalog(tmp_path: Path) -> None:
    loaded = with_secondary(tmp_path, "lake_preprod")
    result, _ = run(loaded)
    assert result.success

    primary, secondary = Path(loaded.output_path), tmp_path / "lake_preprod"
    for table in ("flights", DERIVED):
        ours, theirs = read_table(primary / table).to_table(), read_table(secondary / table).to_table()
        assert theirs.num_rows == ours.num_rows > 0
        assert sorted(theirs.to_pylist(), key=str) == sorted(ours.to_pylist(), key=str)
    assert not (secondary / "_raw").exists()  # the dump is the primary's: only the tables go there

    checks = secondary_checks(result)
    assert set(checks) == {"flights", DERIVED} and all(c.passed for c in checks.values())
    flights_rows = read_table(primary / "flights").count_rows()
    assert checks["flights"].metadata["rows"].value == flights_rows
    assert checks["flights"].metadata["catalog_table"].value == "nycflights13_preprod.flights"
    counted = through_catalog(
        loaded,
        "print(spark.sql('SELECT count(*) FROM nycflights13_preprod.flights').first()[0], "
        "spark.sql('SELECT count(*) FROM nycflights13.flights').first()[0])",
    )
    assert counted.split() == [str(flights_rows)] * 2


def test_a_failure_in_the_secondary_warns_and_the_primary_stands(tmp_path: Path) -> None:
    (tmp_path / "not_a_folder").write_text("a file where the secondary lake should be")
    loaded = with_secondary(tmp_path, "not_a_folder")
    result, instance = run(loaded)
    assert result.success  # the run, and so its notifications, are the primary's

    assert read_table(Path(loaded.output_path) / "flights").count_rows() > 0
    checks = secondary_checks(result)
    assert {k: (c.passed, c.severity) for k, c in checks.items()} == {
        "flights": (False, dg.AssetCheckSeverity.WARN),
        DERIVED: (False, dg.AssetCheckSeverity.WARN),
    }
    assert "not_a_folder" in checks["flights"].metadata["error"].value
    assert "upstream flights failed" in checks[DERIVED].metadata["error"].value

    summary = summarize(instance, result.run_id, result.success, ["flights", DERIVED], 1)
    assert summary.ok, summary.render()
    assert f"warned: {SECONDARY_CHECK}" in summary.tables["flights"].outcome()

    # A derived table alone, later: built in the primary, and not in the secondary, which lacks the day.
    derived, _ = run(loaded, tables=())
    assert derived.success
    (check,) = secondary_checks(derived).values()
    assert not check.passed and "upstream flights has no published partition for 2013-01-02" in (
        check.metadata["error"].value
    )


def test_an_override_publishes_the_primary_only_and_says_how_to_bring_the_secondary_up(
    tmp_path: Path,
) -> None:
    loaded = with_secondary(tmp_path, "lake_preprod", key='["flight_date"]')  # repeats: held back
    held, _ = run(loaded)
    assert not held.success and set(secondary_checks(held)) == {"flights"}  # held back: not published there

    published, instance = run(loaded, tables=(), publish_rejected=held.run_id)
    assert published.success
    (check,) = secondary_checks(published).values()
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert f"dp run --start {DAY} --end {DAY} --tables {DERIVED}" in (check.description or "")
    summary = summarize(instance, published.run_id, True, [DERIVED], 1)
    assert summary.ok, summary.render()  # warned (key_unique by override, the secondary), not failed
    assert not (tmp_path / "lake_preprod" / DERIVED).exists()
