"""The load's blocking checks, decided on what the audit read of a version (no Spark): each passes on
a version that is right, and each fails, saying where, on a version that is wrong in its way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dp_assets.config.loader import PACKAGED, load_config_from
from dp_assets.lake import Lake
from dp_assets.stages.load import load_request
from spark_jobs.contract import LoadSpec
from spark_jobs.evolution import completed, manifests_in
from spark_jobs.loading import evaluate, published_columns
from spark_jobs.storage import write_json

DAYS = ["2013-01-01", "2013-01-02"]
ROWS_IN = {"2013-01-01": 100, "2013-01-02": 80}


@pytest.fixture
def spec(isolated_home: Path) -> LoadSpec:
    """The demo's flights load over two days, as the orchestrator sends it and the job completes it."""
    loaded = load_config_from(PACKAGED, home=isolated_home)
    lake = Lake(loaded)
    for day, rows in ROWS_IN.items():
        write_json(lake.store, lake.manifest_path("flights", day), {"files": [], "rows": rows})
    request = load_request(loaded, "flights")
    return completed(request, manifests_in(lake.store, request, DAYS))[0]


def right_version(spec: LoadSpec) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """Counts and an audit of a version that passes: every day's rows loaded or quarantined."""
    counts = {"quarantined": {"2013-01-01": 1, "2013-01-02": 0}, "deduplicated": dict.fromkeys(DAYS, 0)}
    audited = {
        "paths": [f"{spec['table_uri']}/_versions/run/flight_date={d}" for d in DAYS],
        "schema": published_columns(spec),
        "stats": {"2013-01-01": {"rows": 99}, "2013-01-02": {"rows": 80}},
        "nulls": {"carrier": 0, "flight": 0},  # what the audit counted in the required columns
        "dup_keys": 0,
        "dup_rows": 0,
    }
    return counts, audited


def verdicts(spec: LoadSpec, counts: dict[str, Any], audited: dict[str, Any]) -> dict[str, Any]:
    return {c.name: c for c in evaluate(spec, DAYS, counts, audited)}


def test_a_right_version_passes_every_check(spec: LoadSpec) -> None:
    checks = verdicts(spec, *right_version(spec))
    assert {name: c.passed for name, c in checks.items()} == {
        "schema_matches_design": True,
        "required_columns_not_null": True,
        "key_unique": True,
        "row_accounting": True,
        "quarantine_within_threshold": True,
    }


def test_a_version_written_with_another_schema_fails_schema_matches_design(spec: LoadSpec) -> None:
    counts, audited = right_version(spec)
    written = [(n, "string" if n == "dep_delay" else t) for n, t in audited["schema"] if n != "tailnum"]
    check = verdicts(spec, counts, {**audited, "schema": written})["schema_matches_design"]
    assert not check.passed
    assert "dep_delay double" in check.metadata["expected"]["raw_value"]
    assert "dep_delay string" in check.metadata["written"]["raw_value"]
    assert "tailnum string" not in check.metadata["written"]["raw_value"]


def test_nulls_in_a_required_column_fail_required_columns_not_null(spec: LoadSpec) -> None:
    counts, audited = right_version(spec)
    check = verdicts(spec, counts, {**audited, "nulls": {**audited["nulls"], "carrier": 3}})
    assert not check["required_columns_not_null"].passed
    assert check["required_columns_not_null"].metadata["columns_with_nulls"]["raw_value"] == ["carrier"]


def test_duplicate_keys_fail_key_unique(spec: LoadSpec) -> None:
    counts, audited = right_version(spec)
    check = verdicts(spec, counts, {**audited, "dup_keys": 2, "dup_rows": 5})["key_unique"]
    assert not check.passed
    assert check.metadata["rows_with_duplicate_keys"]["raw_value"] == 5


def test_a_row_unaccounted_for_fails_row_accounting_naming_its_day(spec: LoadSpec) -> None:
    counts, audited = right_version(spec)
    lost = {**audited, "stats": {**audited["stats"], "2013-01-02": {"rows": 79}}}
    check = verdicts(spec, counts, lost)["row_accounting"]
    assert not check.passed
    assert check.metadata["mismatched_partitions"]["raw_value"] == {
        "2013-01-02": {"in": 80, "loaded": 79, "quarantined": 0, "deduplicated": 0}
    }


def test_quarantine_over_its_threshold_fails(spec: LoadSpec) -> None:
    counts, audited = right_version(spec)
    spec["quarantine"]["max_ratio"] = 0.001  # 1 of 180 rows is 0.0056
    check = verdicts(spec, counts, audited)["quarantine_within_threshold"]
    assert not check.passed
    assert check.metadata["rows_quarantined"]["raw_value"] == 1
