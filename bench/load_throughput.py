"""Load throughput: TPC-H lineitem (tpchgen-cli CSV; SF1 = 6,001,215 rows, ~766 MB) into typed
Parquet, dp against DuckDB and against a bare spark-submit doing the same typed conversion of the same
file (on dp's Spark, with dp's settings), alternating.

    uv run python -m bench.load_throughput [--scale 1] [--repeat 2]

dp's numbers: the whole Dagster run (dump: byte copy + parse into staged Parquet; load: the Spark
job with typing, row hashes, accounting, publish, catalog and checks), and the load step alone.
Goals: dp's whole run <= 1.5x the bare spark-submit (#14), its load job <= 3x DuckDB. It also
prints what the Dagster process's own threads read during each run (``bench.common.OwnReads``; the
Spark application is a child process, and its reads are counted apart) against the delivered bytes,
and its peak RSS: #14 asks for under 1% and under 500 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from bench.common import (
    OUT,
    OwnReads,
    machine,
    median,
    peak_rss_mb,
    proc_status_mb,
    table,
    timed,
    workdir,
)
from dp_assets.config.loader import load_config_from
from dp_assets.launchers.local import LocalSparkLauncher
from dp_assets.launchers.select import build_launcher
from dp_assets.runner import run_range

DAY = dt.date(1998, 1, 1)
COLUMNS = [  # TPC-H lineitem, typed as the spec says
    ("l_orderkey", "bigint"),
    ("l_partkey", "bigint"),
    ("l_suppkey", "bigint"),
    ("l_linenumber", "int"),
    ("l_quantity", "decimal(15,2)"),
    ("l_extendedprice", "decimal(15,2)"),
    ("l_discount", "decimal(15,2)"),
    ("l_tax", "decimal(15,2)"),
    ("l_returnflag", "string"),
    ("l_linestatus", "string"),
    ("l_shipdate", "date"),
    ("l_commitdate", "date"),
    ("l_receiptdate", "date"),
    ("l_shipinstruct", "string"),
    ("l_shipmode", "string"),
    ("l_comment", "string"),
]
CONFIG = """
[general]
pipeline_name = "tpch"
input_path = "landing"
output_path = "lake"
start_date = 1998-01-01
end_date = 1998-12-31

[spark.conf]
"spark.driver.memory" = "6g"
"spark.sql.shuffle.partitions" = "8"
"spark.ui.enabled" = "false"

[tables.lineitem]
partition_column = "delivery_date"
key = ["l_orderkey", "l_linenumber"]
source = { prefix = "lineitem" }
columns = [
%s
]
"""


def generate(scale: float) -> Path:
    folder = OUT / f"tpch-sf{scale:g}"
    csv = folder / "lineitem.csv"
    if not csv.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tpchgen = Path(sys.executable).with_name("tpchgen-cli")
        subprocess.run(
            [str(tpchgen), "csv", "-s", f"{scale:g}", "--tables", "lineitem", "--output-dir", str(folder)],
            check=True,
            capture_output=True,
        )
    return csv


def duckdb_convert(csv: Path, out: Path) -> int:
    types = {n: t.upper().replace("STRING", "VARCHAR") for n, t in COLUMNS}
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_csv('{csv}', header = true, columns = {types})) "
        f"TO '{out}' (FORMAT parquet)"
    )
    return con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]


# What a data engineer would submit by hand: the CSV read with the typed schema, written as Parquet
# (FAILFAST: every value parses, or the run fails, so the row count compared means typed rows).
BARE_SPARK = """
import sys
from pyspark.sql import SparkSession

csv, out, schema = sys.argv[1:4]
spark = SparkSession.builder.appName("bare_csv_to_parquet").getOrCreate()
typed = spark.read.schema(schema).option("header", True).option("mode", "FAILFAST").csv(csv)
typed.write.mode("overwrite").parquet(out)
print(spark.read.parquet(out).count())
spark.stop()
"""


def spark_submit_convert(submit: list[str], env: dict[str, str], csv: Path, out: Path) -> int:
    schema = ", ".join(f"{n} {t}" for n, t in COLUMNS)
    done = subprocess.run(
        [*submit, str(csv), str(out), schema], env=env, check=True, capture_output=True, text=True
    )
    return int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    csv = generate(args.scale)
    home = workdir("load_throughput")
    cols = ",\n".join(f'  {{ name = "{n}", type = "{t}" }}' for n, t in COLUMNS)
    (home / "config.toml").write_text(CONFIG % cols)
    loaded = load_config_from(str(home / "config.toml"), home=home)
    delivery = Path(loaded.input_path) / "lineitem" / DAY.isoformat()
    delivery.mkdir(parents=True)
    os.link(csv, delivery / "lineitem.csv")  # the same bytes, no copy
    instance = dg.DagsterInstance.ephemeral()
    print(f"{csv} ({csv.stat().st_size / 2**20:.0f} MiB)", flush=True)
    launcher = build_launcher(loaded)
    assert isinstance(launcher, LocalSparkLauncher)
    script = home / "bare_csv_to_parquet.py"
    script.write_text(BARE_SPARK)
    # dp's Spark and settings, and the JVM dp's run gets for this delivery's size
    quick_jit = launcher.quick_jit_for(csv.stat().st_size)
    submit = [*launcher.command("run_pipeline.py", quick_jit=quick_jit)[:-1], str(script)]
    submit_env = {**os.environ, **launcher.driver_env()}

    dp_total, dp_load, dp_dump, duck, bare, read, peak, children = [], [], [], [], [], [], [], []
    rows = 0
    for n in range(args.repeat):
        Path("/proc/self/clear_refs").write_text("5")  # the peak RSS counts from here (DuckDB's is not dp's)
        with OwnReads() as reads:
            summary, wall = timed(lambda: run_range(loaded, DAY, DAY, instance))
        read.append(reads.own)
        children.append(reads.whole - reads.own - reads.sampler)
        peak.append(proc_status_mb("VmHWM"))
        t = summary.tables["lineitem"]
        assert summary.ok, summary.render()
        rows = t.rows
        dp_total.append(wall)
        dp_dump.append(t.step_seconds["raw/lineitem"])
        dp_load.append(t.step_seconds["lineitem"])
        duck_rows, seconds = timed(lambda: duckdb_convert(csv, home / "duckdb_lineitem.parquet"))
        assert duck_rows == rows, (duck_rows, rows)
        duck.append(seconds)
        bare_rows, seconds = timed(
            lambda: spark_submit_convert(submit, submit_env, csv, home / "spark_lineitem.parquet")
        )
        assert bare_rows == rows, (bare_rows, rows)
        bare.append(seconds)
        event = instance.get_latest_materialization_event(dg.AssetKey("lineitem"))
        phases = event.asset_materialization.metadata["spark_phase_seconds"].value if event else {}
        print(
            f"round {n + 1}: dp run {wall:.1f} s (dump {dp_dump[-1]:.1f}, load {dp_load[-1]:.1f}), "
            f"duckdb {duck[-1]:.1f} s, bare spark-submit {bare[-1]:.1f} s; load phases: {phases}; "
            f"the Dagster process read {read[-1] / 2**20:,.1f} MiB "
            f"({read[-1] / csv.stat().st_size:.4f}x the delivered bytes; its child processes "
            f"{children[-1] / 2**20:,.0f} MiB), peak RSS {peak[-1]:,.0f} MB",
            flush=True,
        )

    base, spark_base = median(duck), median(bare)
    print(
        f"\nLoad throughput on {machine()}; lineitem SF{args.scale:g}, {rows:,} rows; "
        f"median of {args.repeat}, alternating"
    )
    paths = [
        ("DuckDB read_csv (typed) -> Parquet", base),
        ("bare spark-submit: read.csv (typed) -> Parquet, dp's Spark and settings", spark_base),
        ("dp load step (Spark job: type, hash, account, publish, catalog, checks)", median(dp_load)),
        ("dp dump step (byte copy + sha256, parse into staged Parquet)", median(dp_dump)),
        ("dp whole run (Dagster: dump + load + checks)", median(dp_total)),
    ]
    print(
        table(
            ["path", "median wall s", "ratio vs DuckDB", "ratio vs spark-submit"],
            [[name, seconds, seconds / base, seconds / spark_base] for name, seconds in paths],
        )
    )
    whole = median(dp_total) / spark_base
    print(
        f"goal #14: whole run <= 1.5x the bare spark-submit: {'met' if whole <= 1.5 else 'missed'} "
        f"({whole:.2f}x)"
    )
    verdict = "met" if median(dp_load) <= 3 * base else "missed"
    print(f"goal: load job <= 3x DuckDB: {verdict} ({median(dp_load) / base:.2f}x)")
    print(
        f"the Dagster process's own threads read {median(read) / 2**20:,.1f} MiB per run, "
        f"{median(read) / csv.stat().st_size:.4f}x the delivery's {csv.stat().st_size / 2**20:,.0f} MiB "
        f"(goal #14: < 0.01x: {'met' if median(read) < 0.01 * csv.stat().st_size else 'missed'}); "
        f"its child processes (Spark) read {median(children) / 2**20:,.0f} MiB"
    )
    print(f"the Dagster process's peak RSS during a run: {max(peak):,.0f} MB (goal #14: < 500 MB)")
    print(f"peak memory of the whole benchmark: {peak_rss_mb()}")


if __name__ == "__main__":
    main()
