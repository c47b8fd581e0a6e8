"""What a PostgreSQL extract costs the orchestrator per GiB (#14: database extracts still stream
through the Dagster process, with bounded memory, and the README says what that costs).

    uv run python -m bench.extract [--mib 512] [--repeat 3]

A generated table (one day's snapshot, lineitem-like rows, about ``--mib`` MiB as CSV) on the demo's
PostgreSQL (``DP_DEMO_PG_DSN``, else the embedded server) is extracted by dp's ``extract_partition``
into a local raw zone (COPY … TO STDOUT through psycopg, sha256 on the way), against the same COPY
drained by psycopg into nothing, which any client pays, alternating. It prints seconds per GiB, the
ratio, the CPU the extract costs this process and its peak RSS during the extract. Every
extracted byte reaches this process over the connection: that much is received per GiB, by design.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import psycopg

from bench.common import machine, median, proc_status_mb, table, timed, workdir
from dp_assets.config.model import PostgresSource
from dp_assets.demo import DEMO_DSN_ENV, demo_database
from dp_assets.stages.postgres import extract_partition
from spark_jobs.storage import LocalStore

SCHEMA, TABLE, DAY = "bench_extract", "rows", "2013-01-01"
ROW_BYTES = 88  # about what a generated row takes as CSV


def seed(dsn: str, mib: int) -> int:
    rows = mib * 2**20 // ROW_BYTES
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cur.execute(f"CREATE SCHEMA {SCHEMA}")
        cur.execute(
            f"""CREATE TABLE {SCHEMA}.{TABLE} AS SELECT g AS orderkey, g %% 200000 AS partkey,
            (g %% 50)::numeric(12, 2) AS quantity, (g * 1.37)::numeric(12, 2) AS extendedprice,
            date '1992-01-02' + (g %% 2500) AS shipdate, md5(g::text) AS comment,
            CASE g %% 3 WHEN 0 THEN 'DELIVER IN PERSON' WHEN 1 THEN 'TAKE BACK RETURN' ELSE 'NONE' END
              AS shipinstruct
            FROM generate_series(1, %s) AS g""",
            (rows,),
        )
    return rows


def drain(dsn: str) -> int:
    """The bare COPY: every byte the server sends, received and dropped."""
    size = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        copy = f"COPY (SELECT * FROM {SCHEMA}.{TABLE}) TO STDOUT (FORMAT csv, HEADER true)"
        with cur.copy(copy) as stream:
            for chunk in stream:
                size += len(chunk)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    home = workdir("extract")
    dsn = demo_database(home)
    rows, seeded = timed(lambda: seed(dsn, args.mib))
    print(f"seeded {rows:,} rows in {seeded:.1f} s", flush=True)
    source = PostgresSource(kind="postgres", dsn_env=DEMO_DSN_ENV, schema=SCHEMA, table=TABLE)
    store = LocalStore(str(home / "lake"))

    bare, dp, peaks, cpu = [], [], [], []
    size = 0
    for n in range(args.repeat):
        size, seconds = timed(lambda: drain(dsn))
        bare.append(seconds)
        store.delete_prefix("raw")
        Path("/proc/self/clear_refs").write_text("5")  # the peak RSS counts from here
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        entries, seconds = timed(lambda: extract_partition(TABLE, source, DAY, store, "raw"))
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        assert entries[0]["bytes"] == size, (entries, size)
        dp.append(seconds)
        peaks.append(proc_status_mb("VmHWM"))
        cpu.append(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
        print(
            f"round {n + 1}: bare COPY {bare[-1]:.1f} s, dp extract {dp[-1]:.1f} s "
            f"({cpu[-1]:.1f} s CPU in this process), peak RSS {peaks[-1]:,.0f} MB",
            flush=True,
        )

    gib = size / 2**30
    print(
        f"\nPostgreSQL extract on {machine()}; {rows:,} rows, {size / 2**20:,.0f} MiB of CSV; "
        f"median of {args.repeat}, alternating"
    )
    paths = [
        ("bare COPY ... TO STDOUT, drained by psycopg", median(bare)),
        ("dp extract_partition: COPY -> sha256 -> raw zone (local)", median(dp)),
    ]
    print(
        table(
            ["path", "median wall s", "s per GiB", "MiB/s", "ratio"],
            [[p, s, s / gib, size / 2**20 / s, s / median(bare)] for p, s in paths],
        )
    )
    print(
        f"the Dagster process: {median(cpu) / gib:.1f} s CPU per GiB extracted, peak RSS {max(peaks):,.0f} MB"
    )


if __name__ == "__main__":
    main()
