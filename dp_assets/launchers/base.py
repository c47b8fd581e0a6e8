"""The one seam that decides where Spark runs; stages call it and never branch on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

import spark_jobs

PipesResult = dg.MaterializeResult | dg.AssetCheckResult


def spark_jobs_dir() -> Path:
    """The folder of Spark job scripts shipped to wherever Spark runs."""
    return Path(next(iter(spark_jobs.__path__)))


def with_partition_range(context: dg.AssetExecutionContext, extras: Mapping[str, Any]) -> dict[str, Any]:
    """Extras plus the step's partition key range.

    Dagster 1.13 puts ``partition_key_range`` into the Pipes context only when a step targets a
    single partition, so a single-run backfill over many days would reach the job without its
    range; every launcher therefore sends it as an extra.
    """
    if not context.has_partition_key_range:
        return dict(extras)
    key_range = context.partition_key_range
    return {**extras, "partition_key_range": {"start": key_range.start, "end": key_range.end}}


class SparkLauncher(dg.ConfigurableResource):
    """Runs a script from ``spark_jobs/`` through Dagster Pipes and returns what it reported."""

    def run_job(
        self, context: dg.AssetExecutionContext, script: str, extras: Mapping[str, Any]
    ) -> Sequence[PipesResult]:
        raise NotImplementedError(f"{type(self).__name__} does not run Spark jobs")
