"""The dump's own mechanics: a range's files worked on side by side, and what a failure leaves."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dp_assets.config.loader import PACKAGED, load_config_from
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets.stages import dump
from dp_assets.stages.dump import dump_partitions, staged_name

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
    stage_file = dump.stage_file

    def failing(open_raw, name, *args):  # type: ignore[no-untyped-def]
        if "2013-01-02" in name:
            raise OSError(f"disk full while staging {name}")
        return stage_file(open_raw, name, *args)

    monkeypatch.setattr(dump, "stage_file", failing)
    with pytest.raises(OSError, match="disk full"):
        dump_partitions(lake, "flights", DAYS)
    raw_root = Path(lake.uri(lake.raw_root("flights")))
    assert files_under(raw_root) == [] and files_under(Path(lake.uri(lake.staged_root("flights")))) == []

    monkeypatch.setattr(dump, "stage_file", stage_file)
    manifests = dump_partitions(lake, "flights", DAYS)
    assert [m["duplicates"] for m in manifests.values()] == [[], [], []]
    assert all(m["rows"] > 0 for m in manifests.values())


def test_staged_names_are_flat_and_distinct() -> None:
    assert staged_name("flights.csv") == "flights.csv"
    nested, flat = staged_name("a/b.csv"), staged_name("a__b.csv")
    assert "/" not in nested and nested != flat and nested.startswith("a__b.csv.")
