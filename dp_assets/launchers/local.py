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


class LocalSparkLauncher(SparkLauncher):
    master: str = "local[*]"
    conf: dict[str, str] = Field(default_factory=dict)

    def command(self, script: str) -> list[str]:
        log4j = spark_jobs_dir() / "log4j2.properties"
        confs = {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j}", **self.conf}
        args = [spark_submit_path(), "--master", self.master]
        for key, value in confs.items():
            args += ["--conf", f"{key}={value}"]
        return [*args, str(spark_jobs_dir() / script)]

    def run_job(
        self, context: dg.AssetExecutionContext, script: str, extras: Mapping[str, Any]
    ) -> Sequence[PipesResult]:
        # The driver and its Python workers must use this interpreter, which has dagster-pipes.
        env = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
        client = dg.PipesSubprocessClient(env=env)
        return client.run(
            context=context, command=self.command(script), extras=with_partition_range(context, extras)
        ).get_results()
