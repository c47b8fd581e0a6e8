"""The Spark application of one Dagster run: every table it covers, in one SparkSession.

spark-submit runs this file (locally, as one EMR step, on one transient cluster or as one Serverless
job run); everything it needs arrives as a ``contract.RunSpec`` through Pipes. The tables run side
by side on a few threads: each table's dump (its files copied, parsed and scanned by tasks on the
executors, its manifests written here), then its load (completed from those manifests), and each
derived table once the tables it reads are done. A table that fails is reported as failed with its
cause and the others go on; a load whose dump failed (or isolated a day), and a derived table whose
upstream failed (or failed a check) in this run, are not run. Each finished dump sends a message, so
the orchestrator reports it from its manifests while the run goes on; the run's outcome is the last
message, so the orchestrator fails exactly the assets that failed or did not run.
"""

from __future__ import annotations

import threading
import time
import traceback
import warnings
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from dagster_pipes import PipesContext
from pyspark.sql import SparkSession

from spark_jobs.audit import TableOutcome, warm_catalog
from spark_jobs.common import use_s3_credentials
from spark_jobs.contract import (
    DUMPED_MESSAGE,
    OUTCOME_MESSAGE,
    PROGRESS,
    ROW_COUNT,
    SECONDARY_CHECK,
    SENSITIVE_CHECK,
    DeriveSpec,
    DumpDone,
    DumpSpec,
    LoadRequest,
    LoadSpec,
    RunOutcome,
    RunSpec,
    SecondarySpec,
    days_between,
)
from spark_jobs.deriving import derive_table
from spark_jobs.evolution import completed, manifests_in
from spark_jobs.lake_io import Hdfs, Publisher
from spark_jobs.loading import load_table
from spark_jobs.pipes_bootstrap import await_run, awaits_run, end_with_parent, open_pipes
from spark_jobs.storage import store_with

TABLE_THREADS = 4  # tables in flight at once in the one application
# A partitioned write sorts each task's rows by day first, unless the task may keep a file open per
# day. With two, a task that meets one day (a nightly run) writes it unsorted (SF1 lineitem's write
# 12% faster); meeting a second, it sorts the rest of its rows, with at most three files open.
CONCURRENT_DAY_WRITERS = 2
ERROR_CHARS = 4000  # of a failed table's error, in its outcome (the whole traceback goes to the log)


def error_text(exc: BaseException) -> str:
    """The exception as a reader needs it: for Spark's own errors the message, without the JVM stack."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " …"


class OneAtATime:
    """The Pipes context, shared by the table threads: one message (or log line) at a time, so no two
    messages interleave in the transport."""

    def __init__(self, target: Any, lock: threading.Lock | None = None) -> None:
        self._target, self._lock = target, lock or threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name == "log":
            return OneAtATime(attr, self._lock)
        if not callable(attr):
            return attr

        def serialized(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return serialized


class InSecondary:
    """The Pipes context as the secondary environment's tables see it: log lines go through, named
    with the environment; materializations and checks are kept, because the assets are the primary's
    and the secondary reports only as each table's ``SECONDARY_CHECK``."""

    def __init__(self, pipes: Any, name: str) -> None:
        self._pipes, self.name = pipes, name
        self.rows: dict[str, int] = {}  # asset key -> rows published there

    @property
    def log(self) -> InSecondary:
        return self

    def _named(self, message: str) -> str:
        if message.startswith(PROGRESS):
            return f"{PROGRESS}{self.name}: {message.removeprefix(PROGRESS)}"
        return f"{self.name}: {message}"

    def debug(self, message: str) -> None:
        self._pipes.log.debug(self._named(message))

    def info(self, message: str) -> None:
        self._pipes.log.info(self._named(message))

    def warning(self, message: str) -> None:
        self._pipes.log.warning(self._named(message))

    def error(self, message: str) -> None:
        self._pipes.log.warning(self._named(message))  # a failure there warns: the primary stands

    def report_asset_materialization(self, asset_key: str, metadata: dict[str, Any], **_: Any) -> None:
        count = metadata.get(ROW_COUNT)
        self.rows[asset_key] = int(count["raw_value"] if isinstance(count, dict) else count or 0)

    def report_asset_check(self, *_: Any, **__: Any) -> None:
        pass  # its checks decide whether it publishes there, as they do in the primary


class Tables:
    """Runs a run's tables on a few threads of one SparkSession: the loads at once (Spark shares the
    cores between their jobs, and one table's driver-side work overlaps another's tasks), each
    derived table once what it reads is done. A table whose upstream failed is not run."""

    def __init__(
        self,
        spark: SparkSession,
        pipes: PipesContext,
        spec: RunSpec,
        run: str,
        environment: str | None = None,
    ) -> None:
        self.spark, self.pipes, self.run, self.environment = spark, pipes, run, environment
        key_range = spec["partition_key_range"]
        self.days = days_between(key_range["start"], key_range["end"])
        self.credentials = spec["s3_credentials"]
        self.credentialed = use_s3_credentials(spark, self.credentials)
        self.keep_seconds = spec["keep_superseded_seconds"]
        self.outcome: RunOutcome = {"failed": {}, "not_run": {}}
        self.blocked: dict[str, str] = {}  # table (raw/<table> for a dump) -> why its readers must not run

    def dump(self, spec: DumpSpec) -> dict[str, dict[str, Any]] | None:
        """Dump a table's days, the work on bytes on the executors; the days' manifests, or None when
        its load must not run: the dump failed, or isolated a day (its blocking check failed)."""
        # pyarrow and numpy: the parser's and the scan's, in the environment a run that dumps ships
        from spark_jobs.dumping.deliveries import dump_as_specified, on_executors

        table, started = spec["table"], time.monotonic()
        key = f"raw/{table}"
        self.pipes.log.info(f"{PROGRESS}dump {table}: started, {len(spec['days'])} day(s)")
        try:
            manifests = dump_as_specified(
                spec,
                store_with(spec["landing_uri"], self.credentials),
                store_with(spec["lake_uri"], self.credentials),
                on_executors(self.spark.sparkContext),
            )
        except Exception as exc:
            self.pipes.log.error(f"dump {table} failed:\n{traceback.format_exc()}")
            self.outcome["failed"][key] = error_text(exc)
            self.blocked[key] = f"{key} failed"
            return None
        seconds = time.monotonic() - started
        rows = sum(m["rows"] for m in manifests.values())
        self.pipes.log.info(
            f"{PROGRESS}dump {table}: done, {rows:,} rows in {len(manifests)} partition(s) ({seconds:.1f} s)"
        )
        done: DumpDone = {"table": table, "seconds": round(seconds, 2)}
        self.pipes.report_custom_message({DUMPED_MESSAGE: done})
        if any(m.get("isolated") for m in manifests.values()):
            self.blocked[key] = f"{key} failed blocking check {SENSITIVE_CHECK}"
            return None
        return manifests

    def fail(self, stage: str, spec: LoadRequest | DeriveSpec, exc: Exception) -> None:
        self.pipes.log.error(f"{stage} {spec['table']} failed:\n{traceback.format_exc()}")
        self.outcome["failed"][spec["asset_key"]] = error_text(exc)
        self.blocked[spec["table"]] = f"{spec['table']} failed"

    def settle(self, spec: LoadSpec | DeriveSpec, done: TableOutcome) -> None:
        """A table held back by its checks fails, saying where its version is and how to publish it."""
        if done.held_back and self.environment:
            checks = ", ".join(done.failed_checks)
            self.outcome["failed"][spec["asset_key"]] = (
                f"held back in {self.environment}: blocking check(s) {checks} failed on the version about "
                f"to be published there (kept at {done.held_back}); `dp run --start {self.days[0]} --end "
                f"{self.days[-1]} --tables {spec['table']}` publishes the days into both environments again"
            )
            self.blocked[spec["table"]] = f"{spec['table']} failed check(s) {checks}"
        elif done.held_back:
            checks = ", ".join(done.failed_checks)
            self.outcome["failed"][spec["asset_key"]] = (
                f"held back: blocking check(s) {checks} failed on the version about to be published, so "
                f"nothing of this run was published (the previous partitions stay as they were). The "
                f"rejected version is at {done.held_back}: fix the cause and run again, or publish it "
                f"after review with `dp publish --run {self.run} --tables {spec['table']}`"
            )
            self.blocked[spec["table"]] = f"{spec['table']} failed check(s) {checks}"

    def table(self, dump: DumpSpec | None, load: LoadRequest | None) -> None:
        """A table's dump, then its load (on the manifests the dump just wrote), unless the dump
        stops it."""
        dumped = self.dump(dump) if dump is not None else None
        if load is None:
            return
        if dump is not None and dumped is None:
            self.outcome["not_run"][load["asset_key"]] = f"upstream {self.blocked['raw/' + dump['table']]}"
            self.blocked[load["table"]] = f"{load['table']} was not run"
        else:
            self.load(load, dumped)

    def load(self, request: LoadRequest, dumped: dict[str, dict[str, Any]] | None = None) -> None:
        """Load a table's days, on the manifests its dump in this run returned, else on those in the
        lake (a run that loads without dumping)."""
        spec: LoadSpec | LoadRequest = request
        try:
            store = store_with(request["lake_uri"], self.credentials)
            manifests = manifests_in(store, request, self.days, dumped)
            spec, schema = completed(request, manifests)
            if schema["added"]:
                self.pipes.log.warning(
                    f"{spec['table']}: schema evolution adds columns {schema['added']} (as string)"
                )
            if schema["ignored"]:
                self.pipes.log.warning(
                    f"{spec['table']}: ignoring delivered columns {schema['ignored']} (evolution = ignore)"
                )
            done = load_table(
                self.spark,
                self.pipes,
                spec,
                self.days,
                self.run,
                self.credentialed,
                self.keep_seconds,
                schema,
            )
        except Exception as exc:
            self.fail("load", spec, exc)
            return
        self.settle(spec, done)

    def derive(self, spec: DeriveSpec, upstream: list[Future[None]]) -> None:
        wait(upstream)
        causes = [self.blocked[t] for t in spec["upstream"] if t in self.blocked]
        if causes:
            self.outcome["not_run"][spec["asset_key"]] = f"upstream {'; '.join(causes)}"
            self.blocked[spec["table"]] = f"{spec['table']} was not run"
            return
        try:
            done = derive_table(self.spark, self.pipes, spec, self.days, self.run, self.keep_seconds)
        except Exception as exc:
            self.fail("derive", spec, exc)
            return
        self.settle(spec, done)

    def run_all(self, spec: RunSpec) -> RunOutcome:
        # Tasks start in submission order and a derived table waits only on tables submitted before
        # it (dependency order), so a waiting thread never waits on a task that has not started.
        warm_catalog(self.spark, [s["catalog_table"] for s in (*spec["loads"], *spec["derives"])])
        dumps = {d["table"]: d for d in spec["dumps"]}
        loads = {s["table"]: s for s in spec["loads"]}
        with ThreadPoolExecutor(TABLE_THREADS, thread_name_prefix="dp-table") as pool:
            tasks = {t: pool.submit(self.table, dumps.get(t), loads.get(t)) for t in {**dumps, **loads}}
            for derive in spec["derives"]:
                upstream = [tasks[t] for t in derive["upstream"] if t in tasks]
                tasks[derive["table"]] = pool.submit(self.derive, derive, upstream)
        for task in tasks.values():
            task.result()  # surfaces a bug in this scheduling itself; table errors are in the outcome
        return self.outcome

    def publish_secondary(self, spec: RunSpec, target: SecondarySpec) -> None:
        """After the primary, the same dump into the secondary environment: each table the primary
        published, written, audited and published there the same way; a derived table only when what
        it reads there has the run's days. Each outcome is reported as the table's SECONDARY_CHECK, a
        warning when it failed: the primary's outcome never changes for it."""
        name = target["name"]
        tables = [
            s for s in (*target["loads"], *target["derives"]) if s["asset_key"] not in self.outcome_keys
        ]
        if not tables:
            return
        self.pipes.log.info(f"{PROGRESS}{name}: publishing {', '.join(s['table'] for s in tables)}")
        quiet = InSecondary(self.pipes, name)
        there = Tables(self.spark, quiet, spec, self.run, environment=name)  # type: ignore[arg-type]
        loads = [s for s in target["loads"] if s in tables]
        derives = []
        for d in (s for s in target["derives"] if s in tables):
            if missing := self.missing_upstream(d, {s["table"] for s in (*loads, *derives)}):
                there.outcome["not_run"][d["asset_key"]] = f"in {name}, {missing}"
            else:
                derives.append(d)
        try:
            there.run_all({**spec, "dumps": [], "loads": loads, "derives": derives})  # type: ignore[typeddict-item]
        except Exception as exc:  # whatever went wrong there, the primary's outcome is reported as it is
            quiet.warning(f"publishing into it stopped:\n{traceback.format_exc()}")
            unreported = {s["asset_key"] for s in tables} - there.outcome_keys - set(quiet.rows)
            there.outcome["failed"].update(dict.fromkeys(unreported, error_text(exc)))
        for s in tables:
            key = s["asset_key"]
            error = there.outcome["failed"].get(key) or there.outcome["not_run"].get(key)
            where = {"environment": name, "table_uri": {"raw_value": s["table_uri"], "type": "path"}}
            if s["catalog_table"]:
                where["catalog_table"] = s["catalog_table"]
            self.pipes.report_asset_check(
                SECONDARY_CHECK,
                passed=error is None,
                severity="WARN",
                asset_key=key,
                metadata={**where, **({"error": error} if error else {"rows": quiet.rows.get(key, 0)})},
            )

    def missing_upstream(self, spec: DeriveSpec, built: set[str]) -> str | None:
        """Why a derived table cannot be built from what its environment has: an upstream table that
        is neither built before it in this pass nor published there for every one of the run's days."""
        hdfs = Hdfs(self.spark)
        for table, upstream in spec["upstream"].items():
            if table in built:
                continue
            have = Publisher(hdfs, upstream["uri"], upstream["partition_column"]).published(self.days)
            if lacking := [d for d in self.days if d not in have]:
                return (
                    f"upstream {table} has no published partition for {', '.join(lacking)}: run {table} "
                    f"over those days first"
                )
        return None

    @property
    def outcome_keys(self) -> set[str]:
        """Tables that failed or did not run in this environment."""
        return {*self.outcome["failed"], *self.outcome["not_run"]}


def start_spark(name: str) -> tuple[SparkSession, float]:
    """The run's session, and the seconds it took to start."""
    started = time.monotonic()
    spark = (
        SparkSession.builder.appName(name)
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.maxConcurrentOutputFileWriters", str(CONCURRENT_DAY_WRITERS))
        .getOrCreate()
    )
    return spark, time.monotonic() - started


def main() -> None:
    # pyspark checks for pandas while converting rows, and warns about a pandas the job never uses.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    end_with_parent()
    ahead, how = None, ""
    if awaits_run():  # started ahead of its run: Spark starts while the run is being created
        ahead = start_spark("dp-run")
        how = f" ahead of the run, which took it over {await_run():.1f} s later,"
    with open_pipes() as opened:
        pipes: PipesContext = OneAtATime(opened)  # type: ignore[assignment]
        spec: RunSpec = opened.extras  # type: ignore[assignment]
        run = opened.run_id or f"adhoc-{int(time.time())}"
        spark, seconds = ahead or start_spark(f"dp-run-{run}")
        tables = Tables(spark, pipes, spec, run)
        pipes.log.info(
            f"{PROGRESS}spark: Spark {spark.version} started in {seconds:.1f} s{how} for "
            f"{len(spec['dumps'])} dump(s), {len(spec['loads'])} load(s) and {len(spec['derives'])} derived "
            "table(s)"
        )
        outcome = tables.run_all(spec)
        if secondary := spec.get("secondary"):
            tables.publish_secondary(spec, secondary)
        pipes.report_custom_message({OUTCOME_MESSAGE: outcome})
        spark.stop()


if __name__ == "__main__":
    main()
