"""A load killed (SIGKILL) at any point leaves each partition old or new, never mixed; the next load
finishes the work and the content is identical to an uninterrupted load."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from dp_assets.lake import Lake
from dp_assets_tests.helpers import demo_lake, materializations, materialize_range

pytestmark = pytest.mark.spark_job  # also run on each EMR Spark line (.ci/run)

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
    folder = Path(loaded.output_path) / "flights" / f"flight_date={day}"
    return (
        sorted(pq.read_table(folder, columns=["row_hash"])["row_hash"].to_pylist()) if folder.exists() else []
    )


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

    def state() -> list[str]:
        out = []
        for d in DAYS:
            now = hashes(loaded, d)
            if now == a[d]:
                out.append("A")
            elif len(now) == len(a[d]) - DROPPED and set(now) <= set(a[d]) and len(set(now)) == len(now):
                out.append("B")
            else:
                out.append(f"MIXED({len(now)} rows)")
        return out

    deliver("B")
    observed = {}
    for kill_at in ("loaded_written", "staging_written", "swapped_1"):
        result = load(loaded, kill_at, monkeypatch)
        assert not result.success, kill_at
        observed[kill_at] = state()
    assert observed == {
        "loaded_written": ["A", "A", "A"],  # killed while writing staging: nothing published
        "staging_written": ["A", "A", "A"],  # staged, not journaled: nothing published
        "swapped_1": ["B", "A", "A"],  # journaled, one partition swapped: each old or new
    }

    deliver("A")
    assert not load(loaded, "journal_written", monkeypatch).success
    # That run first finished the swapped_1 journal (all B), then died after journaling A.
    assert state() == ["B", "B", "B"]

    final = load(loaded, None, monkeypatch)
    assert final.success
    assert state() == ["A", "A", "A"]
    assert {d: hashes(loaded, d) for d in DAYS} == a  # identical rows and row hashes
    recovered = materializations(final, "flights")[0].metadata["recovered_publishes"].value
    assert len(recovered) == 1  # the journal_written run's publish, rolled forward
    table = Path(loaded.output_path) / "flights"
    leftovers = [
        p for folder in ("_publish", "_staging", "_trash") for p in (table / folder).rglob("*") if p.is_file()
    ]
    assert leftovers == []  # journals applied, staging swapped in, old partitions removed
