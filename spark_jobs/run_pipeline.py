"""The Spark application of one Dagster run: every table it covers, in one SparkSession.

spark-submit runs this file (locally, as one EMR step, on one transient cluster or as one Serverless
job run); everything it needs arrives as a ``contract.RunSpec`` through Pipes. Loads come first, then
derived tables in dependency order. A table that fails is reported as failed with its cause and the
others go on; a derived table whose upstream failed (or failed a check) in this run is not run.
The run's outcome is the last message, so the orchestrator fails exactly those assets.
"""

from __future__ import annotations

import time
import traceback

from pyspark.sql import SparkSession

from spark_jobs.common import days_between, use_s3_credentials
from spark_jobs.contract import OUTCOME_MESSAGE, RunOutcome, RunSpec
from spark_jobs.deriving import derive_table
from spark_jobs.loading import load_table
from spark_jobs.pipes_bootstrap import open_pipes

ERROR_CHARS = 4000  # of a failed table's error, in its outcome (the whole traceback goes to the log)


def error_text(exc: BaseException) -> str:
    """The exception as a reader needs it: for Spark's own errors the message, without the JVM stack."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " …"


def main() -> None:
    with open_pipes() as pipes:
        spec: RunSpec = pipes.extras  # type: ignore[assignment]
        key_range = spec["partition_key_range"]
        days = days_between(key_range["start"], key_range["end"])
        run = pipes.run_id or f"adhoc-{int(time.time())}"
        started = time.monotonic()
        spark = (
            SparkSession.builder.appName(f"dp-run-{run}")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .getOrCreate()
        )
        credentialed = use_s3_credentials(spark, spec["s3_credentials"])
        pipes.log.info(
            f"Spark {spark.version} started in {time.monotonic() - started:.1f} s for "
            f"{len(spec['loads'])} load(s) and {len(spec['derives'])} derived table(s)"
        )
        outcome: RunOutcome = {"failed": {}, "not_run": {}}
        blocked: dict[str, str] = {}  # table -> why its readers must not run
        for load in spec["loads"]:
            try:
                failed_checks = load_table(spark, pipes, load, days, run, credentialed)
            except Exception as exc:
                pipes.log.error(f"load {load['table']} failed:\n{traceback.format_exc()}")
                outcome["failed"][load["asset_key"]] = error_text(exc)
                blocked[load["table"]] = f"{load['table']} failed"
                continue
            if failed_checks:
                blocked[load["table"]] = f"{load['table']} failed check(s) {', '.join(failed_checks)}"
        for derive in spec["derives"]:
            causes = [blocked[t] for t in derive["upstream"] if t in blocked]
            if causes:
                outcome["not_run"][derive["asset_key"]] = f"upstream {'; '.join(causes)}"
                blocked[derive["table"]] = f"{derive['table']} was not run"
                continue
            try:
                derive_table(spark, pipes, derive, days, run)
            except Exception as exc:
                pipes.log.error(f"derive {derive['table']} failed:\n{traceback.format_exc()}")
                outcome["failed"][derive["asset_key"]] = error_text(exc)
                blocked[derive["table"]] = f"{derive['table']} failed"
        pipes.report_custom_message({OUTCOME_MESSAGE: outcome})
        spark.stop()


if __name__ == "__main__":
    main()
