"""Run the pipeline for a range of days as one Dagster run, and summarize what happened per table."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import dagster as dg

from dp_assets.config.loader import LoadedConfig
from dp_assets.definitions import PIPELINE_JOB, build_definitions


class RangeError(ValueError):
    pass


@dataclass
class TableSummary:
    table: str
    partitions: int = 0
    rows: int = 0
    rows_quarantined: int = 0
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    run_id: str
    success: bool
    tables: dict[str, TableSummary]
    expected_partitions: int

    @property
    def ok(self) -> bool:
        return self.success and all(
            t.partitions == self.expected_partitions and not t.failed_checks for t in self.tables.values()
        )

    def render(self) -> str:
        lines = [f"{'table':<20} {'partitions':>10} {'rows':>10} {'quarantined':>11} {'seconds':>8}  checks"]
        for t in self.tables.values():
            checks = "all passed" if not t.failed_checks else "FAILED: " + ", ".join(t.failed_checks)
            lines.append(
                f"{t.table:<20} {t.partitions:>10} {t.rows:>10} {t.rows_quarantined:>11} "
                f"{t.seconds:>8.1f}  {checks}"
            )
        lines.append(f"run {self.run_id}: {'succeeded' if self.ok else 'FAILED'}")
        return "\n".join(lines)


def default_instance(home: Path) -> dg.DagsterInstance:
    """The instance the UI shows: ``$DAGSTER_HOME``, or ``<DP_HOME>/dagster_home`` when unset."""
    if not os.environ.get("DAGSTER_HOME"):
        dagster_home = home / "dagster_home"
        dagster_home.mkdir(parents=True, exist_ok=True)
        packaged_yaml = Path(__file__).resolve().parent.parent / "dagster.yaml"
        if packaged_yaml.is_file() and not (dagster_home / "dagster.yaml").exists():
            shutil.copy(packaged_yaml, dagster_home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dg.DagsterInstance.get()


def check_range(loaded: LoadedConfig, start: dt.date, end: dt.date) -> int:
    """Number of days in [start, end], refusing ranges outside the partitions or over max_partitions."""
    general, processing = loaded.config.general, loaded.config.processing
    if end < start:
        raise RangeError(f"--end {end} is before --start {start}")
    if start < general.start_date or (general.end_date and end > general.end_date):
        raise RangeError(
            f"{start}..{end} is outside the partitions {general.start_date}..{general.end_date or 'today'} "
            f"set by general.start_date/end_date in {loaded.provenance.uri}"
        )
    days = (end - start).days + 1
    if days > processing.max_partitions:
        raise RangeError(
            f"{days} days exceed processing.max_partitions = {processing.max_partitions}; "
            "split the range or raise the limit in the config"
        )
    return days


def run_range(
    loaded: LoadedConfig,
    start: dt.date,
    end: dt.date,
    instance: dg.DagsterInstance,
    tables: list[str] | None = None,
    defs: dg.Definitions | None = None,
    clean_up: bool = False,
    e2e_test: bool = False,
) -> RunSummary:
    """Materialize dump -> load (+checks) for the tables, and the derived tables, over [start, end]
    as one run (default: everything the config defines)."""
    days = check_range(loaded, start, end)
    configured = list(loaded.config.tables)
    known = configured + [PurePosixPath(f).stem for f in loaded.sql_files]  # derived: one per SQL file
    names = tables or known
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise RangeError(f"unknown table(s) {unknown}; the config declares {sorted(known)}")
    defs = defs or build_definitions(loaded)
    job = defs.resolve_job_def(PIPELINE_JOB)
    selection = [
        k
        for n in names
        for k in ((dg.AssetKey(["raw", n]), dg.AssetKey(n)) if n in configured else (dg.AssetKey(n),))
    ]
    flags = {"clean_up": clean_up, "e2e_test": e2e_test}
    result = job.execute_in_process(
        instance=instance,
        asset_selection=selection,
        raise_on_error=False,
        run_config={"ops": {f"raw__{n}": {"config": flags} for n in names if n in configured}},
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
    )
    return summarize(instance, result.run_id, result.success, names, days)


def summarize(
    instance: dg.DagsterInstance, run_id: str, success: bool, names: list[str], days: int
) -> RunSummary:
    tables = {n: TableSummary(n) for n in names}
    started: dict[str, float] = {}
    partitions: dict[str, set[str]] = defaultdict(set)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        step = event.step_key or ""
        table = next((n for n in names if step in (n, f"raw__{n}")), None)
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[step] = entry.timestamp
        elif (
            event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE) and table
        ):
            took = entry.timestamp - started.get(step, entry.timestamp)
            tables[table].seconds += took
            tables[table].step_seconds[step] = took
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.step_materialization_data.materialization
            name = mat.asset_key.to_user_string()
            if name in tables:
                partitions[name].add(mat.partition or "")
                md = mat.metadata  # each partition's materialization carries its own counts
                tables[name].rows += int(md["dagster/row_count"].value) if "dagster/row_count" in md else 0
                q = md.get("rows_quarantined")
                tables[name].rows_quarantined += int(q.value) if q else 0
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            name = evaluation.asset_key.to_user_string()
            if name in tables and not evaluation.passed:
                tables[name].failed_checks.append(evaluation.check_name)
    for name, parts in partitions.items():
        tables[name].partitions = len(parts)
    return RunSummary(run_id=run_id, success=success, tables=tables, expected_partitions=days)
