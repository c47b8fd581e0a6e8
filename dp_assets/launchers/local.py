"""Spark on this machine: ``spark-submit --master local[*]`` as a Pipes subprocess."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from dp_assets.launchers.base import PipesResult, SparkLauncher, spark_jobs_dir, with_partition_range


def spark_submit_path() -> str:
    """The spark-submit installed with pyspark next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("spark-submit")
    found = str(beside) if beside.exists() else shutil.which("spark-submit")
    if not found:
        raise dg.Failure(
            "spark-submit not found: install pyspark into this environment (uv sync) or put it on PATH"
        )
    return found


def catalog_conf(catalog_dir: str) -> dict[str, str]:
    """Spark settings for a persistent local catalog: an embedded Derby metastore in catalog_dir.

    Derby admits one Spark application at a time, so local loads share the ``spark`` pool.
    """
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={catalog_dir}/metastore_db;create=true"
        ),
        "spark.sql.warehouse.dir": f"{catalog_dir}/warehouse",
    }


class LocalSparkLauncher(SparkLauncher):
    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)
    catalog_dir: str | None = None  # a Derby metastore here backs Spark's catalog; None: no catalog

    def command(self, script: str) -> list[str]:
        log4j = spark_jobs_dir() / "log4j2.properties"
        java_options = f"-Dlog4j2.configurationFile=file:{log4j}"
        catalog = catalog_conf(self.catalog_dir) if self.catalog_dir else {}
        if self.catalog_dir:
            java_options += f" -Dderby.system.home={self.catalog_dir}"  # keeps derby.log out of the cwd
        confs = {"spark.driver.extraJavaOptions": java_options, **catalog, **self.conf}
        args = [spark_submit_path(), "--master", self.master]
        for key, value in confs.items():
            args += ["--conf", f"{key}={value}"]
        return [*args, str(spark_jobs_dir() / script)]

    def driver_env(self) -> dict[str, str]:
        """The driver and its Python workers must use this interpreter, which has dagster-pipes."""
        return {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}

    def run_job(
        self, context: dg.AssetExecutionContext, script: str, extras: Mapping[str, Any]
    ) -> Sequence[PipesResult]:
        client = dg.PipesSubprocessClient(env=self.driver_env())
        return client.run(
            context=context, command=self.command(script), extras=with_partition_range(context, extras)
        ).get_results()
