"""Small helpers shared by tests: configs, deliveries and reading results back."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.dataset as pads

from dp_assets.config.loader import PACKAGED, LoadedConfig, load_config_from
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake, published_dataset
from dp_assets.launchers.base import JobEvent, PipesResult
from spark_jobs.contract import CURRENT, DUMPED_MESSAGE, VERSIONS, DumpDone
from spark_jobs.dumping.deliveries import dump_as_specified
from spark_jobs.lake_io import referenced_versions
from spark_jobs.storage import store_for

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def demo_lake(home: Path, start: str, end: str) -> tuple[LoadedConfig, dict[str, int]]:
    """The packaged config rooted at `home`, with the demo deliveries for [start, end] written."""
    loaded = load_config_from(PACKAGED, home=home)
    rows = write_flight_deliveries(Lake(loaded), dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    return loaded, rows


def range_tags(start: str, end: str) -> dict[str, str]:
    return {RANGE_START: start, RANGE_END: end}


def unreferenced_versions(table: str | Path) -> list[str]:
    """Version folders of ``table`` that neither a published day nor a replaced one (kept for the
    retention) points to: a crashed run's leftovers, which the next run must have deleted."""
    current = Path(table) / CURRENT
    state = json.loads(current.read_text()) if current.exists() else {"partitions": {}, "superseded": {}}
    return sorted(
        p.name for p in (Path(table) / VERSIONS).glob("*") if p.name not in referenced_versions(state)
    )


def read_table(path: str | Path) -> pads.Dataset:
    """A table as a reader going by the lake sees it (the published version of each day), or, for a
    folder that is one version (``_rejected/<run>``), what that version holds."""
    if (Path(path) / CURRENT).exists():
        return published_dataset(path)
    return pads.dataset(str(path), format="parquet", partitioning="hive")


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """By check name: for runs of one table (tables share check names)."""
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def checks_by_asset(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    """By (asset, check name): for runs of several tables."""
    return {
        (e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }


def materializations(result: dg.ExecuteInProcessResult, key: str) -> list[dg.AssetMaterialization]:
    """A run's materializations of one asset (``"raw/flights"``, ``"flights"``), partition by partition."""
    asset_key = dg.AssetKey.from_user_string(key)
    return [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == asset_key
    ]


def materialize_keys(
    defs: dg.Definitions, *keys: str | list[str], resources: dict | None = None, **kwargs: object
) -> dg.ExecuteInProcessResult:
    """Materialize ``keys`` and their checks (one subset of the multi-asset holding every table)."""
    return dg.materialize(
        defs.assets,  # type: ignore[arg-type]
        selection=[dg.AssetKey(k) for k in keys],
        resources=resources or defs.resources,
        **kwargs,  # type: ignore[arg-type]
    )


def materialize_range(
    loaded: LoadedConfig,
    start: str,
    end: str,
    extra_assets: tuple = (),
    raise_on_error: bool = False,
    instance: dg.DagsterInstance | None = None,
    tables: tuple[str, ...] | None = None,
    derived: tuple[str, ...] = (),
    publish_rejected: str | None = None,
) -> dg.ExecuteInProcessResult:
    """The dump and load of `tables` (default: those delivered as files, which tests write), the
    `derived` tables and the extra assets, over [start, end] as one run (default: a fresh instance).
    Database-sourced tables need a seeded server: the tests that want them select them. With
    `publish_rejected`, the loads only, publishing what that run held back (as `dp publish` does)."""
    from dp_assets.config.model import FileSource
    from dp_assets.definitions import build_definitions
    from dp_assets.stages.tables import TABLES_OP

    defs = build_definitions(loaded)
    if tables is None:
        tables = tuple(n for n, t in loaded.config.tables.items() if isinstance(t.source, FileSource))
    selection = [k for t in tables for k in (dg.AssetKey(["raw", t]), dg.AssetKey(t))]
    if publish_rejected:
        selection = [k for k in selection if k.path[0] != "raw"]
    selection += [dg.AssetKey(name) for name in derived]
    selection += [k for a in extra_assets for k in a.keys]
    return dg.materialize(
        [*defs.assets, *extra_assets],  # type: ignore[list-item]
        selection=selection,
        resources=defs.resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        tags=range_tags(start, end),
        raise_on_error=raise_on_error,
        run_config={"ops": {TABLES_OP: {"config": {"publish_rejected": publish_rejected}}}},
    )


def through_catalog(loaded, body: str) -> str:
    """What ``body`` prints, run in a new Spark application with ``spark`` on the lake's catalog."""
    catalog_dir = str(loaded.dp_home / "catalog")
    script = f"""
from pyspark.sql import SparkSession
from dp_assets.launchers.local import catalog_conf
builder = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
for k, v in catalog_conf({catalog_dir!r}).items():
    builder = builder.config(k, v)
spark = builder.getOrCreate()
{body}
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=catalog_dir,
        env={**os.environ, "JAVA_TOOL_OPTIONS": f"-Dderby.system.home={catalog_dir}"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def dumps_as_the_job_does(extras: dict[str, Any]) -> Iterator[dict[str, DumpDone]]:
    """What ``spark_jobs/run_pipeline.py`` does with a run's dumps, done in this process for a
    launcher that stands in for Spark: the message it sends as each finishes."""
    for spec in extras["dumps"]:
        started = time.monotonic()
        dump_as_specified(spec, store_for(spec["landing_uri"]), store_for(spec["lake_uri"]))
        yield {DUMPED_MESSAGE: {"table": spec["table"], "seconds": round(time.monotonic() - started, 2)}}


def pipes_results(events: Iterator[JobEvent]) -> Iterator[PipesResult]:
    """A launcher's results as an asset yields them, without the job's custom messages."""
    return (e for e in events if not isinstance(e, dict))


# A test job's wait, after its materialization, until the orchestrator has it: the asset touches the
# file named ``handshake`` (``touching_on_materialization``) as soon as the launcher hands it over.
AWAIT_HANDSHAKE = """
deadline = time.monotonic() + 60
while not os.path.exists(handshake):
    if time.monotonic() > deadline:
        raise RuntimeError("the orchestrator got nothing while the job ran")
    time.sleep(0.1)
"""


def touching_on_materialization(events: Iterator[JobEvent], handshake: Path) -> Iterator[PipesResult]:
    """``pipes_results``, touching ``handshake`` when the materialization arrives."""
    for event in pipes_results(events):
        if isinstance(event, dg.MaterializeResult):
            handshake.touch()
        yield event
