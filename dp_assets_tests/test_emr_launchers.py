"""The EMR launchers end to end against moto and the emulator, with a tiny Pipes job instead of Spark.

The job is shipped as a release the way ``dp deploy`` lays it out (``spark_jobs/<script>`` plus
``spark_jobs.zip`` for ``--py-files``, which the entry script imports from). The good path must
bring back metadata and the check for every launcher; every fault must fail the run with its cause.
"""

import gzip
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
from dagster._core.pipes import utils as pipes_utils
from moto.backends import get_backend
from moto.emr.models import ElasticMapReduceBackend

from dp_assets.config.model import EmrCluster
from dp_assets.deploy import spark_jobs_zip
from dp_assets.launchers.base import SparkLauncher
from dp_assets.launchers.emr import (
    EmrExistingLauncher,
    EmrLauncher,
    EmrPipesLauncher,
    EmrServerlessLauncher,
    PollConfig,
    driver_logs,
    failure_excerpt,
    redacted,
)
from dp_assets_tests.conftest import spark_available
from dp_assets_tests.emr_emulator import (
    ACCOUNT,
    EmrEmulator,
    release_runner,
    serverless_application,
    shared_cluster,
)
from dp_assets_tests.helpers import (
    AWAIT_HANDSHAKE,
    materializations,
    pipes_results,
    range_tags,
    touching_on_materialization,
)

RELEASE_BUCKET, PIPES_BUCKET, LOG_BUCKET = "dp-release", "dp-pipes", "dp-logs"
RELEASE = f"s3://{RELEASE_BUCKET}/test/demo/releases/r1"
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")

JOB = (
    """
import os
import sys
import time

import boto3
from dagster_pipes import PipesS3ContextLoader, PipesS3MessageWriter, open_dagster_pipes

from spark_jobs.jobhelper import count_rows  # from spark_jobs.zip: proves --py-files reached the job

s3 = boto3.client("s3")
with open_dagster_pipes(
    context_loader=PipesS3ContextLoader(s3), message_writer=PipesS3MessageWriter(s3, interval=0.2)
) as pipes:
    extras = pipes.extras
    print("driver says hello")
    time.sleep(extras.get("sleep", 0))
    if extras.get("fail"):
        print("about to fail", file=sys.stderr)
        raise RuntimeError("boom: the job failed on purpose")
    rows = count_rows(extras["partition_key_range"])
    key_range = {"raw_value": extras["partition_key_range"], "type": "json"}
    pipes.report_asset_materialization(metadata={"rows": rows, "range": key_range})
    if "handshake" in extras:
        handshake = extras["handshake"]
"""
    + textwrap.indent(AWAIT_HANDSHAKE, " " * 8)
    + """
    pipes.report_asset_check("rows_positive", passed=rows > 0, metadata={"rows": rows})
"""
)

SPARK_JOB = """
import boto3
from dagster_pipes import PipesS3ContextLoader, PipesS3MessageWriter, open_dagster_pipes
from pyspark.sql import SparkSession

s3 = boto3.client("s3")
with open_dagster_pipes(context_loader=PipesS3ContextLoader(s3), message_writer=PipesS3MessageWriter(s3)):
    spark = SparkSession.builder.getOrCreate()
    spark.sql("SELECT no_such_column FROM range(3)").collect()
"""

HELPER = """
def count_rows(key_range):
    return 10 * (int(key_range["end"][-2:]) - int(key_range["start"][-2:]) + 1)
"""


@pytest.fixture
def release(aws: str, tmp_path: Path) -> str:
    """The job as a release in moto S3, plus the Pipes and log buckets."""
    s3 = boto3.client("s3")
    for bucket in (RELEASE_BUCKET, PIPES_BUCKET, LOG_BUCKET):
        s3.create_bucket(Bucket=bucket)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "pipes_job.py").write_text(JOB)
    (jobs / "jobhelper.py").write_text(textwrap.dedent(HELPER))
    prefix = RELEASE.removeprefix(f"s3://{RELEASE_BUCKET}/")
    s3.put_object(Bucket=RELEASE_BUCKET, Key=f"{prefix}/spark_jobs/pipes_job.py", Body=JOB.encode())
    s3.put_object(Bucket=RELEASE_BUCKET, Key=f"{prefix}/spark_jobs.zip", Body=spark_jobs_zip(jobs))
    s3.put_object(Bucket=RELEASE_BUCKET, Key=f"{prefix}/spark_jobs/no_pipes.py", Body=b"print('no Pipes')")
    s3.put_object(Bucket=RELEASE_BUCKET, Key=f"{prefix}/spark_jobs/spark_fails.py", Body=SPARK_JOB.encode())
    return RELEASE


@pytest.fixture(autouse=True)
def quick_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster waits 10 s for messages after a session whose job never closed it (killed jobs)."""
    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)


QUICK = PollConfig(interval_seconds=0.1, max_wait_seconds=60, log_wait_seconds=0)
COMMON: dict[str, Any] = {
    "release_uri": RELEASE,
    "messages_uri": f"s3://{PIPES_BUCKET}/runs",
    "log_uri": f"s3://{LOG_BUCKET}/emr/",
    "region_name": "us-east-1",
    "poll": QUICK,
}


def transient(**overrides: Any) -> EmrLauncher:
    return EmrLauncher(**{**COMMON, **overrides}, **EmrCluster(tags={"team": "data"}).model_dump())


def existing() -> EmrExistingLauncher:
    return EmrExistingLauncher(**COMMON, cluster_id=shared_cluster(COMMON["log_uri"]))


def serverless(**overrides: Any) -> EmrServerlessLauncher:
    return EmrServerlessLauncher(
        **{**COMMON, "log_uri": f"s3://{LOG_BUCKET}/serverless/", **overrides},
        application_id=serverless_application(),
        execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/dp-job",
        python="/usr/bin/python3.11",  # a custom image with python3.11: 7.x images have 3.9 only
    )


LAUNCHERS = {"transient": transient, "existing": existing, "serverless": serverless}


def materialize(
    launcher: EmrPipesLauncher, extras: dict[str, Any] | None = None, script: str = "pipes_job.py"
) -> dg.ExecuteInProcessResult:
    @dg.asset(
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec("rows_positive", asset="emr_demo")],
    )
    def emr_demo(context: dg.AssetExecutionContext, spark: SparkLauncher):  # type: ignore[no-untyped-def]
        yield from pipes_results(spark.run_job(context, script, extras or {}))

    return dg.materialize(
        [emr_demo],
        resources={"spark": launcher},
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-03",
        },
        raise_on_error=False,
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success, "a fault was reported as a success"
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run failed, but not in the step"
    data = failures[0].step_failure_data
    description = data.user_failure_data.description if data.user_failure_data else ""
    return f"{description}\n{data.error.to_string() if data.error else ''}"


@pytest.mark.parametrize("kind", list(LAUNCHERS))
def test_good_path_reports_metadata_and_check(kind: str, release: str, emr_emulator: EmrEmulator) -> None:
    result = materialize(LAUNCHERS[kind]())
    assert result.success
    mats = materializations(result, "emr_demo")
    assert [m.partition for m in mats] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    metadata = mats[0].metadata
    assert metadata["rows"].value == 30
    assert metadata["range"].value == {"start": "2024-01-01", "end": "2024-01-03"}
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "rows_positive" and check.passed
    # The job ran from the release; its zip was on the path.
    assert emr_emulator.commands and emr_emulator.commands[0].argv[-1].endswith("pipes_job.py")


@pytest.mark.parametrize("kind", list(LAUNCHERS))
def test_results_reach_dagster_while_the_job_runs(
    kind: str, release: str, emr_emulator: EmrEmulator, tmp_path: Path
) -> None:
    """After its materialization the job waits until the asset has received it: a launcher that
    handed results over only once the job ended would leave it waiting until it failed."""
    handshake = tmp_path / "received"

    @dg.asset(
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec("rows_positive", asset="emr_demo")],
    )
    def emr_demo(context: dg.AssetExecutionContext, spark: SparkLauncher):  # type: ignore[no-untyped-def]
        yield from touching_on_materialization(
            spark.run_job(context, "pipes_job.py", {"handshake": str(handshake)}), handshake
        )

    result = dg.materialize(
        [emr_demo], resources={"spark": LAUNCHERS[kind]()}, tags=range_tags("2024-01-01", "2024-01-02")
    )
    assert result.success
    assert [c.check_name for c in result.get_asset_check_evaluations()] == ["rows_positive"]


def test_step_finishing_between_polls_reads_as_its_end_state(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient cluster's step completes and the cluster terminates between the poll's two
    describe calls: a success (now or at the next poll), never "step RUNNING on a TERMINATED cluster"."""
    launcher = transient()
    emr = boto3.client("emr", region_name="us-east-1")
    cluster_id = emr.run_job_flow(
        Name="race",
        Instances={"KeepJobFlowAliveWhenNoSteps": False},
        Steps=[{"Name": "s", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}],
        JobFlowRole="r",
        ServiceRole="r",
    )["JobFlowId"]
    cluster = get_backend("emr")[ACCOUNT]["us-east-1"].clusters[cluster_id]  # no emulator: we move states
    (step,) = cluster.steps
    step.state, cluster.state = "RUNNING", "RUNNING"
    describe_cluster, describe_step = (
        ElasticMapReduceBackend.describe_cluster,
        ElasticMapReduceBackend.describe_step,
    )

    reads = 0

    def second_read_after_the_end(read: Any) -> Any:
        def call(backend: ElasticMapReduceBackend, *args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            if reads == 2:  # the step ends and the cluster terminates between the two reads
                step.state, cluster.state = "COMPLETED", "TERMINATED"
            return read(backend, *args, **kwargs)

        return call

    monkeypatch.setattr(
        ElasticMapReduceBackend, "describe_cluster", second_read_after_the_end(describe_cluster)
    )
    monkeypatch.setattr(ElasticMapReduceBackend, "describe_step", second_read_after_the_end(describe_step))
    outcome = launcher.step_check(emr, cluster_id, step.id, transient=True)
    assert outcome is None or outcome.ok, outcome.summary
    if outcome is None:  # the first read saw it running: the next poll sees both ends
        outcome = launcher.step_check(emr, cluster_id, step.id, transient=True)
        assert outcome is not None and outcome.ok, outcome


def test_step_args_carry_pointers_not_extras(release: str) -> None:
    """The extras stay in S3; the step's visible args hold only the Pipes pointers, masked in logs."""
    launcher = transient()
    env = {"DAGSTER_PIPES_CONTEXT": "abc", "DAGSTER_PIPES_MESSAGES": "def"}
    step = launcher.step("pipes_job.py", launcher.runtime(), env, {}, "X")
    args = step["HadoopJarStep"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[-3:] == ["--py-files", f"{RELEASE}/spark_jobs.zip", f"{RELEASE}/spark_jobs/pipes_job.py"]
    assert "--conf" in args and "spark.yarn.appMasterEnv.DAGSTER_PIPES_CONTEXT=abc" in args
    shown = redacted([*args, "--conf", "spark.hadoop.fs.s3a.secret.key=hunter2"])
    assert "abc" not in shown and "hunter2" not in shown and "DAGSTER_PIPES_CONTEXT=***" in shown


@pytest.mark.parametrize("kind", ["existing", "serverless"])
def test_failed_job_fails_with_state_reason_and_traceback(
    kind: str, release: str, emr_emulator: EmrEmulator
) -> None:
    text = failure_text(materialize(LAUNCHERS[kind](), {"fail": True}))
    assert "FAILED" in text
    assert "exited with code 1" in text or "ExitCode: 1" in text
    assert "driver output" in text and "boom: the job failed on purpose" in text


def test_transient_cluster_terminated_with_errors_after_failed_step(
    release: str, emr_emulator: EmrEmulator
) -> None:
    text = failure_text(materialize(transient(), {"fail": True}))
    assert "FAILED" in text and "TERMINATED_WITH_ERRORS" in text and "STEP_FAILURE" in text
    assert "boom: the job failed on purpose" in text


def test_cluster_terminated_with_errors_is_not_a_success(release: str, emr_emulator: EmrEmulator) -> None:
    """The dagster-aws bug: the step completed, the cluster ended TERMINATED_WITH_ERRORS."""
    emr_emulator.faults.cluster_terminates_with_errors = True
    text = failure_text(materialize(transient()))
    assert "COMPLETED" in text and "TERMINATED_WITH_ERRORS" in text and "INTERNAL_ERROR" in text


@pytest.mark.parametrize("kind", ["existing", "serverless"])
def test_cancelled_step_fails(kind: str, release: str, emr_emulator: EmrEmulator) -> None:
    emr_emulator.faults.cancel_step = True
    text = failure_text(materialize(LAUNCHERS[kind](), {"sleep": 30}))
    assert "CANCELLED" in text


def test_interrupt_cancels_only_our_step(release: str, emr_emulator: EmrEmulator) -> None:
    launcher = existing()
    assert materialize(launcher).success  # someone's earlier step on the shared cluster
    emr_emulator.faults.interrupt = True
    text = failure_text(materialize(launcher, {"sleep": 30}))
    assert "interrupted" in text
    emr = boto3.client("emr")
    steps = emr.list_steps(ClusterId=launcher.cluster_id)["Steps"]  # newest first
    assert [s["Status"]["State"] for s in steps] == ["CANCELLED", "COMPLETED"]
    assert emr_emulator.cancel_requests == [(launcher.cluster_id, [steps[0]["Id"]])]
    assert emr.describe_cluster(ClusterId=launcher.cluster_id)["Cluster"]["Status"]["State"] == "WAITING"


def assert_stopped(kind: str, emr_emulator: EmrEmulator, launcher: EmrPipesLauncher) -> None:
    """What the launcher started is stopped: the existing cluster's step cancelled (the cluster
    waits on), the transient cluster terminated, the Serverless job run cancelled."""
    if kind == "existing":
        assert isinstance(launcher, EmrExistingLauncher)
        (step,) = boto3.client("emr").list_steps(ClusterId=launcher.cluster_id)["Steps"]
        assert step["Status"]["State"] == "CANCELLED"
        assert emr_emulator.cancel_requests == [(launcher.cluster_id, [step["Id"]])]
    elif kind == "transient":
        (cluster,) = [c for c in emr_emulator.emr.clusters.values() if c.name.startswith("dp ")][-1:]
        assert cluster.state == "TERMINATED"
    else:
        runs = [r for rs in emr_emulator.serverless.job_runs.values() for r in rs]
        assert runs[-1].state == "CANCELLED"


@pytest.mark.parametrize("kind", ["transient", "existing", "serverless"])
def test_a_run_that_stops_reading_stops_its_job(
    kind: str, release: str, emr_emulator: EmrEmulator, tmp_path: Path
) -> None:
    """The run fails while it handles a result the job reported (the job still runs), and closes what
    the launcher yields: what it started is stopped, not left running on EMR."""
    launcher = LAUNCHERS[kind]()

    @dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
    def emr_demo(context: dg.AssetExecutionContext, spark: SparkLauncher):  # type: ignore[no-untyped-def]
        extras = {"handshake": str(tmp_path / "never")}
        with closing(spark.run_job(context, "pipes_job.py", extras)) as events:
            for event in events:
                raise RuntimeError(f"failed while handling {type(event).__name__}")
        yield from ()

    result = dg.materialize(
        [emr_demo],
        resources={"spark": launcher},
        tags=range_tags("2024-01-01", "2024-01-02"),
        raise_on_error=False,
    )
    assert "failed while handling MaterializeResult" in failure_text(result)
    assert_stopped(kind, emr_emulator, launcher)


@pytest.mark.parametrize("kind", ["transient", "serverless"])
def test_interrupt_stops_what_we_started(kind: str, release: str, emr_emulator: EmrEmulator) -> None:
    emr_emulator.faults.interrupt = True
    launcher = LAUNCHERS[kind]()
    text = failure_text(materialize(launcher, {"sleep": 30}))
    assert "interrupted" in text
    assert_stopped(kind, emr_emulator, launcher)


def test_missing_logs_fail_cleanly(release: str, emr_emulator: EmrEmulator) -> None:
    """No logs under LogUri: still the state and reason, never KeyError: 'Contents'."""
    emr_emulator.faults.no_logs = True
    text = failure_text(materialize(existing(), {"fail": True}))
    assert "FAILED" in text and "no step logs under s3://dp-logs/emr" in text
    assert "KeyError" not in text


def test_timeout_cancels_and_fails(release: str, emr_emulator: EmrEmulator) -> None:
    launcher = serverless(poll=PollConfig(interval_seconds=0.1, max_wait_seconds=1, log_wait_seconds=0))
    text = failure_text(materialize(launcher, {"sleep": 30}))
    assert "timed out" in text
    runs = [r for rs in emr_emulator.serverless.job_runs.values() for r in rs]
    assert runs[-1].state == "CANCELLED"


def test_success_without_a_pipes_report_is_a_failure(release: str, emr_emulator: EmrEmulator) -> None:
    """A job that exits 0 but never closes its Pipes session must not become an empty success."""
    text = failure_text(materialize(existing(), script="no_pipes.py"))
    assert "COMPLETED" in text and "never closed" in text


def test_cluster_mode_failure_shows_the_driver_traceback(release: str, emr_emulator: EmrEmulator) -> None:
    """In cluster mode the step's stderr is only spark-submit's summary; the traceback is in the
    driver's YARN container log, which the failure must quote."""
    launcher = existing()
    text = failure_text(materialize(launcher, {"fail": True}))
    assert "Traceback" in text and "RuntimeError: boom: the job failed on purpose" in text
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=LOG_BUCKET, Prefix=f"emr/{launcher.cluster_id}/")["Contents"]
    step_stderr = next(o["Key"] for o in listed if "/steps/" in o["Key"] and o["Key"].endswith("stderr.gz"))
    summary = gzip.decompress(s3.get_object(Bucket=LOG_BUCKET, Key=step_stderr)["Body"].read()).decode()
    assert "finished with failed status" in summary and "boom" not in summary
    assert any("/containers/application_" in o["Key"] and "_000001/stderr" in o["Key"] for o in listed)


@pytest.mark.skipif(not spark_available(), reason="needs Java for Spark")
def test_spark_error_on_a_transient_cluster_reaches_the_user(release: str, emr_emulator: EmrEmulator) -> None:
    """Real spark-submit: a query Spark rejects fails the asset with the cluster's end state and
    Spark's own error from the driver's log, not Spark's shutdown chatter that follows it."""
    emr_emulator.runner = release_runner()
    spark_time = PollConfig(interval_seconds=0.2, max_wait_seconds=600, log_wait_seconds=0)
    text = failure_text(materialize(transient(poll=spark_time), script="spark_fails.py"))
    assert "FAILED" in text and "TERMINATED_WITH_ERRORS (STEP_FAILURE" in text
    assert (
        "Traceback" in text and "AnalysisException: [UNRESOLVED_COLUMN" in text and "no_such_column" in text
    )
    assert "INFO SparkContext" not in text  # Spark's shutdown lines after the cause are left out


@pytest.mark.skipif(not spark_available(), reason="needs Java for Spark")
def test_a_job_on_the_images_python3_fails_as_it_would_on_emr(
    release: str, emr_emulator: EmrEmulator
) -> None:
    """The emulator runs the release's own interpreters: EMR 7's python3 is 3.9, where the shipped
    dagster_pipes does not import, so pointing the jobs at it fails here as it would on a cluster."""
    emr_emulator.runner = release_runner()
    spark_time = PollConfig(interval_seconds=0.2, max_wait_seconds=600, log_wait_seconds=0)
    text = failure_text(materialize(transient(poll=spark_time, python="/usr/bin/python3")))
    assert "FAILED" in text and "cannot import name 'TypeAlias' from 'typing'" in text
    assert "python3.9" in text  # the traceback's paths are the 3.9 interpreter's


SHUTDOWN = "26/11/24 02:35:13 INFO SparkContext: Successfully stopped SparkContext"
JAVA_CAUSE = """py4j.protocol.Py4JJavaError: An error occurred while calling o24.save.
: java.nio.file.AccessDeniedException: s3a://lake/flights: getFileStatus on s3a://lake/flights
""" + "".join(
    f"\tat org.apache.hadoop.fs.s3a.S3AFileSystem.m{i}(S3AFileSystem.java:{i})\n" for i in range(60)
)


@pytest.mark.parametrize(
    ("logs", "quoted", "left_out"),
    [
        # PySpark: the Python traceback on the driver's stdout, Java frames and shutdown lines around it
        (
            {
                "stdout": 'loading\nTraceback (most recent call last):\n  File "load.py", line 3\n'
                + JAVA_CAUSE,
                "stderr": f"{SHUTDOWN}\n",
            },
            ["Traceback", "line 3", "AccessDeniedException: s3a://lake/flights", "calling o24.save"],
            ["loading", "S3AFileSystem.m59", "INFO SparkContext"],
        ),
        # a chained traceback in plain Python's stderr, shutdown lines in between: both parts stay
        (
            {
                "stderr": "Traceback (most recent call last):\nKeyError: 'x'\n\nDuring handling of the above "
                f"exception, another exception occurred:\n\n{SHUTDOWN}\nTraceback (most recent call last):\n"
                "RuntimeError: boom\n"
            },
            ["KeyError: 'x'", "During handling", "RuntimeError: boom"],
            ["INFO SparkContext"],
        ),
        # no traceback: the stderr tail without the INFO lines
        (
            {"stderr": f"{SHUTDOWN}\nException in thread main: java.lang.OutOfMemoryError\n{SHUTDOWN}\n"},
            ["OutOfMemoryError"],
            ["INFO SparkContext"],
        ),
        ({"stderr": f"{SHUTDOWN}\n"}, [], ["INFO"]),  # only chatter: nothing to quote
        ({}, [], []),
    ],
)
def test_failure_excerpt_quotes_the_cause(
    logs: dict[str, str], quoted: list[str], left_out: list[str]
) -> None:
    excerpt = failure_excerpt(logs)
    assert all(q in excerpt for q in quoted), excerpt
    assert not any(x in excerpt for x in left_out), excerpt
    assert bool(excerpt) == bool(quoted)


def test_driver_logs_come_from_the_last_attempts_master_container(aws: str) -> None:
    """YARN retried the application: the failure quotes attempt 2's driver, not attempt 1's or an
    executor's; and nothing (rather than an error) while the containers' logs are not in S3 yet."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=LOG_BUCKET)
    containers, app = f"s3://{LOG_BUCKET}/emr/j-1/containers", "application_1795_0001"
    step_stderr = f"INFO Client: Application report for {app} (state: FINISHED)"
    assert driver_logs(s3, containers, step_stderr) == ("", {})
    for container, text in [
        ("container_e01_1795_0001_01_000001", "attempt 1"),
        ("container_e01_1795_0001_02_000001", "attempt 2"),
        ("container_e01_1795_0001_02_000002", "an executor"),
    ]:
        key = f"emr/j-1/containers/{app}/{container}/stdout.gz"
        s3.put_object(Bucket=LOG_BUCKET, Key=key, Body=gzip.compress(text.encode()))
    assert driver_logs(s3, containers, step_stderr) == (
        "container_e01_1795_0001_02_000001",
        {"stdout": "attempt 2"},
    )
    assert driver_logs(s3, containers, "no application named") == ("", {})
