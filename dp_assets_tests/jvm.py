"""How the tests' Spark JVMs start fast: each test's application lives seconds on kilobytes, so a
JVM's start-up (loading some 20,000 classes, compiling them) is most of what it costs.

- ``-XX:TieredStopAtLevel=1``: the quick compiler only. The optimizing one (C2) would take cores
  from applications too short to profit from it.
- Class-data sharing: the classes a Spark application loads (Spark, Hive and Derby, Parquet) are
  archived once per Spark installation and Java, from a warm-up application, and mapped by every
  later JVM instead of loaded (``-XX:SharedArchiveFile``). A JVM whose class path differs from the
  archive's ignores it and loads classes as usual.

spark-submit reads ``SPARK_SUBMIT_OPTS``, and every application in the tests comes from it: the
local launcher's and pyspark's in-process sessions (``conftest``), and the emulated clusters', whose
nodes get the options for the release's Spark (``emr_emulator``). Benchmarks and ``dp demo`` run
without them, as users do.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg

from dp_assets.launchers.local import (
    SPARK_HOME_ENV,
    SPARK_PYTHON_ENV,
    LocalSparkLauncher,
    default_spark_home,
)
from spark_jobs.contract import QUICK_JIT

# What a load does, in small: Parquet and CSV through the Hive catalog (Derby), a Python worker.
WARM_UP = """
import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
out = sys.argv[1]
days = spark.range(1000).selectExpr("id", "CAST(id AS STRING) AS s", "DATE'2013-01-01' AS d")
days.write.partitionBy("d").parquet(f"{out}/t")
days.write.option("header", True).csv(f"{out}/c")
spark.read.option("header", True).csv(f"{out}/c").groupBy("s").count().collect()
spark.sql(f"CREATE TABLE w (id BIGINT, s STRING, d DATE) USING parquet PARTITIONED BY (d) LOCATION '{out}/t'")
spark.sql(f"ALTER TABLE w ADD PARTITION (d = '2013-01-01') LOCATION '{out}/t/d=2013-01-01'")
assert spark.table("w").count() == 1000
assert spark.sparkContext.parallelize(range(10), 2).map(lambda x: x * 2).sum() == 90
spark.stop()
"""


def archive_for(spark_home: Path, python: str) -> Path | None:
    """The class-data archive of this Spark installation and Java, built on first use; None when
    it cannot be built (the tests then start Spark without one)."""
    java = shutil.which("java")
    if java is None:
        return None
    jars = sorted(p.name for p in (spark_home / "jars").glob("*.jar"))
    key = hashlib.sha256("\n".join([str(spark_home.resolve()), str(Path(java).resolve()), *jars]).encode())
    archive = Path.home() / ".cache" / "dp" / "cds" / f"spark-{key.hexdigest()[:16]}.jsa"
    if archive.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dp-cds-") as folder:
        script = Path(folder) / "warm_up.py"
        script.write_text(WARM_UP)
        dumped = Path(folder) / "spark.jsa"
        # The local launcher's own command and environment, with the warm-up in place of its job.
        launcher = LocalSparkLauncher(
            master="local[2]",
            conf={"spark.ui.enabled": "false"},
            catalog_dir=f"{folder}/catalog",
            spark_home=str(spark_home),
            python=python,
        )
        try:
            runtime = launcher.runtime()
        except dg.Failure as refused:  # not a runtime the launcher runs: no archive either
            print(f"no class-data archive for {spark_home}: {refused.description}", file=sys.stderr)
            return None
        command = [*launcher.command("run_pipeline.py", runtime)[:-1], str(script), f"{folder}/out"]
        env = {
            **os.environ,
            **launcher.driver_env(runtime),
            "SPARK_SUBMIT_OPTS": f"{QUICK_JIT} -XX:ArchiveClassesAtExit={dumped}",
        }
        done = subprocess.run(command, env=env, cwd=folder, capture_output=True, timeout=600)
        if done.returncode != 0 or not dumped.exists():
            print(f"no class-data archive for {spark_home}: {done.stderr.decode()[-2000:]}", file=sys.stderr)
            return None
        partial = archive.with_suffix(f".{os.getpid()}.partial")
        shutil.move(dumped, partial)
        partial.replace(archive)
    return archive


@functools.cache  # an archive's key lists its Spark's jars: once per installation, not per step
def fast_start_options(spark_home: Path | None = None, python: str | None = None) -> str:
    """``SPARK_SUBMIT_OPTS`` for a Spark installation: by default the one the local launcher runs
    (``DP_SPARK_HOME`` on a lane), with the jobs' interpreter."""
    spark_home = spark_home or Path(os.environ.get(SPARK_HOME_ENV) or default_spark_home())
    archive = archive_for(spark_home, python or os.environ.get(SPARK_PYTHON_ENV) or sys.executable)
    return f"{QUICK_JIT} -XX:SharedArchiveFile={archive}" if archive else QUICK_JIT
