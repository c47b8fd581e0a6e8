"""Run the pipeline for a range of days as one Dagster run, and summarize what happened per table."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import FileSource
from dp_assets.console import run_console
from dp_assets.definitions import PIPELINE_JOB, build_definitions
from dp_assets.lake import Lake
from dp_assets.launchers.local import LocalSparkLauncher, known_input
from dp_assets.liveness import owner_tags, release_dead_runs
from dp_assets.stages.derive import derived_tables
from dp_assets.stages.dump import MissingDelivery, list_delivery
from dp_assets.stages.tables import TABLES_OP
from spark_jobs.contract import RANGE_TOTALS

log = logging.getLogger("dp.run")


class RangeError(ValueError):
    pass


ERROR_WIDTH = 120  # a step's error is quoted on the summary line up to this many characters

# Dagster wraps an exception raised in user code; the summary quotes the exception itself.
_WRAPPERS = {
    "DagsterExecutionStepExecutionError",
    "DagsterUserCodeExecutionError",
    "DagsterResourceFunctionError",
    "DagsterExecutionLoadInputError",
    "DagsterExecutionHandleOutputError",
}


@dataclass
class TableSummary:
    """One table's line: its dump and load steps (a derived table: its one step) and their checks."""

    table: str
    partitions: int = 0
    rows: int = 0
    rows_quarantined: int = 0
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)  # failed with ERROR severity
    warned_checks: list[str] = field(default_factory=list)  # failed with WARN severity
    passed_checks: list[str] = field(default_factory=list)
    planned_checks: list[str] = field(default_factory=list)
    failure: str | None = None  # "<asset>: <first line of the step's error>"
    not_run: str | None = None  # why a step did not run ("" when not known)

    @property
    def unrun_checks(self) -> list[str]:
        evaluated = {*self.failed_checks, *self.warned_checks, *self.passed_checks}
        return [c for c in self.planned_checks if c not in evaluated]

    def ok(self, expected_partitions: int) -> bool:
        return (
            self.failure is None
            and self.not_run is None
            and self.partitions == expected_partitions
            and not self.failed_checks
            and not self.unrun_checks
        )

    def outcome(self) -> str:
        """``all passed`` only when the steps succeeded and every declared check ran and passed."""
        if self.failure is not None:
            return f"FAILED in {self.failure}"
        if self.failed_checks:
            return "FAILED checks: " + ", ".join(self.failed_checks)
        if self.not_run is not None:
            return "not run" + (f": {self.not_run}" if self.not_run else "")
        if not (self.passed_checks or self.warned_checks):
            return "no checks ran" if self.planned_checks else "no checks declared"
        parts = []
        if self.warned_checks:
            parts.append("warned: " + ", ".join(self.warned_checks))
        if self.unrun_checks:
            parts.append("did not run: " + ", ".join(self.unrun_checks))
        passed = [c for c in self.passed_checks if c not in self.warned_checks]
        return f"{len(passed)} passed; " + "; ".join(parts) if parts else "all passed"


@dataclass
class RunSummary:
    run_id: str
    success: bool
    tables: dict[str, TableSummary]
    expected_partitions: int
    released: list[str] = field(default_factory=list)  # dead runs this run found and released

    @property
    def ok(self) -> bool:
        return self.success and all(t.ok(self.expected_partitions) for t in self.tables.values())

    def render(self) -> str:
        lines = [
            *self.released,
            f"{'table':<20} {'partitions':>10} {'rows':>10} {'quarantined':>11} {'seconds':>8}  checks",
        ]
        for t in self.tables.values():
            lines.append(
                f"{t.table:<20} {t.partitions:>10} {t.rows:>10} {t.rows_quarantined:>11} "
                f"{t.seconds:>8.1f}  {t.outcome()}"
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


def selected_tables(loaded: LoadedConfig, tables: list[str] | None) -> list[str]:
    """The tables named (default: every table the config defines, derived ones included)."""
    known = loaded.table_names
    names = tables or known
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise RangeError(f"unknown table(s) {unknown}; the config declares {sorted(known)}")
    return names


def table_selection(loaded: LoadedConfig, names: list[str], dumps: bool = True) -> list[dg.AssetKey]:
    """The assets a run of ``names`` materializes: each configured table's dump (``raw/<t>``) and
    load, and each derived table; their checks come with them."""
    raw = [dg.AssetKey(["raw", n]) for n in names if n in loaded.config.tables] if dumps else []
    return [*raw, *(dg.AssetKey(n) for n in names)]


@contextmanager
def warm_spark(
    loaded: LoadedConfig,
    defs: dg.Definitions,
    days: list[str],
    names: list[str],
    dumps: bool,
    e2e_test: bool = False,
) -> Iterator[None]:
    """The run's local Spark application, started while Dagster creates the run
    (``LocalSparkLauncher.warm_start``), with the JIT its spec will ask for as far as ``expected_input``
    tells (a run its extracts tip over the threshold starts its application again, with both compilers).
    Best effort: what keeps it from starting (a delivery it cannot list, a Spark it cannot run) is the
    run's to report, from its step."""
    launcher = defs.resources.get("spark")
    with ExitStack() as stack:
        if isinstance(launcher, LocalSparkLauncher):
            try:
                expected = expected_input(loaded, days, names, dumps, e2e_test)
                stack.enter_context(launcher.warm_start(launcher.quick_jit_for(expected)))
            except Exception as e:
                log.warning(
                    f"Spark not started ahead of the run ({type(e).__name__}: {e}); its step starts it"
                )
        yield


def expected_input(
    loaded: LoadedConfig, days: list[str], names: list[str], dumps: bool, e2e_test: bool = False
) -> int | None:
    """What a run of ``names`` over ``days`` will read, by the rule of its spec (``known_input``), before
    the run exists: the delivered files as listed now; a database table's extract, not made yet, as 0."""
    lake, tables = Lake(loaded, e2e_test=e2e_test), loaded.config.tables
    loads = [n for n in names if n in tables]
    dumped = dict.fromkeys(loads if dumps else [], 0)
    for name in dumped:
        for day in days if isinstance(tables[name].source, FileSource) else []:
            with suppress(MissingDelivery):  # the run's dump says what is missing
                dumped[name] += sum(f.size for f in list_delivery(lake, name, day))
    derives = {d.name: list(d.transform.upstream) for d in derived_tables(loaded) if d.name in names}
    return known_input(dumped, loads, derives)


def run_range(
    loaded: LoadedConfig,
    start: dt.date,
    end: dt.date,
    instance: dg.DagsterInstance,
    tables: list[str] | None = None,
    defs: dg.Definitions | None = None,
    clean_up: bool = False,
    e2e_test: bool = False,
    publish_rejected: str | None = None,
    log_file: Path | None = None,
    verbose: bool = False,
) -> RunSummary:
    """Materialize dump -> load (+checks) for the tables, and the derived tables, over [start, end]
    as one run (default: everything the config defines). With ``publish_rejected``, the loads of the
    tables only: each publishes the version that run's checks held back. With ``log_file``, the
    terminal shows progress, warnings and errors, and the file every event (``console``)."""
    days = check_range(loaded, start, end)
    names = selected_tables(loaded, tables)
    defs = defs or build_definitions(loaded)
    job = defs.resolve_job_def(PIPELINE_JOB)
    selection = table_selection(loaded, names, dumps=not publish_rejected)
    flags = {"clean_up": clean_up, "e2e_test": e2e_test, "publish_rejected": publish_rejected}
    released = release_dead_runs(instance)  # a killed run's slot would block this one forever
    run_config: dict[str, Any] = {"ops": {TABLES_OP: {"config": flags}}}
    if log_file is not None:
        job = job.with_logger_defs({"dp": run_console})
        run_config["loggers"] = {"dp": {"config": {"log_file": str(log_file), "verbose": verbose}}}
    result = job.execute_in_process(
        instance=instance,
        asset_selection=selection,
        raise_on_error=False,
        run_config=run_config,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
            **owner_tags(),
        },
    )
    summary = summarize(instance, result.run_id, result.success, names, days)
    summary.released = released
    return summary


def summarize(
    instance: dg.DagsterInstance, run_id: str, success: bool, names: list[str], days: int
) -> RunSummary:
    """Per table, from the run's event log: rows and partitions it published, how long its stages
    took, whether they failed (and why) or never ran (and why), and the checks planned and their
    evaluations. A table is its dump (``raw/<t>``) and load (``<t>``), or a derived table's one asset;
    the run's one step names, when it fails, each asset that failed or did not run."""
    tables = {n: TableSummary(n) for n in names}
    table_of = {**{dg.AssetKey(["raw", n]): n for n in names}, **{dg.AssetKey(n): n for n in names}}
    planned: list[dg.AssetKey] = []
    materialized: set[dg.AssetKey] = set()
    seconds: dict[dg.AssetKey, float] = {}  # each partition repeats its range's timing: counted once
    started: set[str] = set()
    finished: set[str] = set()
    failed: dict[str, str] = {}  # asset -> why, from the step's failure
    not_run: dict[str, str] = {}
    step_error: str | None = None  # a step failure that names no asset (e.g. the Spark job crashed)
    run_error: str | None = None
    partitions: dict[str, set[str]] = defaultdict(set)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        step, kind, data = event.step_key or "", event.event_type, event.event_specific_data
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED and data.asset_key in table_of:
            planned.append(data.asset_key)
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED and data.asset_key in table_of:
            checks = tables[table_of[data.asset_key]].planned_checks
            if data.check_name not in checks:
                checks.append(data.check_name)
        elif kind == dg.DagsterEventType.STEP_START:
            started.add(step)
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            finished.add(step)
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            finished.add(step)
            user = data.user_failure_data
            md = user.metadata if user is not None else {}
            if "failed" in md or "not_run" in md:
                failed.update(md["failed"].value if "failed" in md else {})
                not_run.update(md["not_run"].value if "not_run" in md else {})
            elif data.error is None or data.error.cls_name != "DagsterAssetCheckFailedError":
                step_error = error_line(data)  # blocking checks that failed say it themselves
        elif kind == dg.DagsterEventType.RUN_FAILURE and data is not None and data.error is not None:
            run_error = error_line(data)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.step_materialization_data.materialization
            materialized.add(mat.asset_key)
            md = mat.metadata  # each partition's materialization carries its own counts
            totals = md[RANGE_TOTALS].value if RANGE_TOTALS in md else {}
            for timing in ("dump_seconds", "spark_seconds"):
                if timing in totals:  # type: ignore[operator]
                    seconds[mat.asset_key] = float(totals[timing])  # type: ignore[index]
            name = mat.asset_key.to_user_string()
            if name in tables:
                partitions[name].add(mat.partition or "")
                tables[name].rows += int(md["dagster/row_count"].value) if "dagster/row_count" in md else 0
                q = md.get("rows_quarantined")
                tables[name].rows_quarantined += int(q.value) if q else 0
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION and data.asset_key in table_of:
            t = tables[table_of[data.asset_key]]
            if data.passed:
                evaluated = t.passed_checks
            elif data.severity == dg.AssetCheckSeverity.WARN:
                evaluated = t.warned_checks
            else:
                evaluated = t.failed_checks
            if data.check_name not in evaluated:  # a check evaluated per partition is listed once
                evaluated.append(data.check_name)
    for name, parts in partitions.items():
        tables[name].partitions = len(parts)
    for key, took in seconds.items():
        if key in table_of:
            tables[table_of[key]].seconds += took
            tables[table_of[key]].step_seconds[key.to_user_string()] = took
    interrupted = started - finished
    for name, t in tables.items():
        keys = sorted(
            (k for k in planned if table_of[k] == name), key=lambda k: k.path[0] != "raw"
        )  # dump first
        if not keys:  # not in the run's plan
            t.not_run = f"run failed: {run_error}" if run_error else ""
        for key in keys:
            label = key.to_user_string()
            if label in failed:
                t.failure = f"{label}: {first_line(failed[label])}"
            elif label in not_run:
                t.not_run = not_run[label]
            elif key in materialized:
                continue
            elif step_error is not None:
                t.failure = f"{label}: {step_error}"
            elif interrupted:
                t.failure = f"{label}: the step started but did not finish"
            elif not started:
                t.not_run = f"run failed: {run_error}" if run_error else ""
            else:
                continue  # its blocking checks failed: they say it
            break
    return RunSummary(run_id=run_id, success=success, tables=tables, expected_partitions=days)


def first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "no error message")
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"


def error_line(failure: Any) -> str:
    """The first line of a step's (or run's) error, trimmed to ERROR_WIDTH: a ``dg.Failure``'s
    description, else the exception Dagster's wrapper holds, as ``ExceptionClass: message``."""
    user = getattr(failure, "user_failure_data", None)
    if user is not None and user.description:
        text = user.description
    else:
        error = getattr(failure, "error", None)
        while error is not None and error.cls_name in _WRAPPERS and error.cause is not None:
            error = error.cause
        if error is None:
            return "no error recorded"
        qualified, sep, message = error.message.partition(": ")
        text = f"{error.cls_name}: {message}" if sep and qualified.endswith(error.cls_name) else error.message
    return first_line(text)
