"""Spark on AWS EMR: a transient cluster, an existing cluster, or EMR Serverless, all through Pipes.

Built on dagster-aws's Pipes building blocks (S3 message reader, S3 context injector,
``open_pipes_session``) but not on its ``PipesEMRClient.run``: that reports a cluster that ended
TERMINATED_WITH_ERRORS as a success, waits on a fixed 30-minute waiter and raises ``KeyError`` when
no logs exist. Here every launcher shares one poll loop whose interval and deadline are config, and
success is the one state that means success; anything else, a timeout or an interrupt is a
``dg.Failure`` naming the state, the reason and what the Spark driver said (its Python traceback).

The job reads its Pipes context from S3 and writes its messages to S3 (``PipesS3ContextLoader`` and
``PipesS3MessageWriter`` in the job), so the step's arguments carry only two bucket/key pointers,
never the extras: a step's arguments are visible to anyone who can describe the cluster.
"""

from __future__ import annotations

import gzip
import re
import shlex
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import boto3
import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from pydantic import Field

from dp_assets.launchers import job_env
from dp_assets.launchers.base import JobEvent, Reported, SparkLauncher, with_partition_range
from dp_assets.launchers.runtime import (
    SparkRuntime,
    UnsupportedRuntime,
    emr_runtime,
    instance_architecture,
    one_architecture,
    pinned_conf,
)

STEP_DONE = {"COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"}
CLUSTER_DONE = {"TERMINATED", "TERMINATED_WITH_ERRORS"}
JOB_RUN_DONE = {"SUCCESS", "FAILED", "CANCELLED"}
EXCERPT_LINES = 40
LogsT = TypeVar("LogsT")
_SECRET_KEY = re.compile(r"secret|password|token|credential|DAGSTER_PIPES", re.IGNORECASE)


class PollConfig(dg.Config):
    """How the shared poll loop waits: every launcher polls, none uses a fixed boto3 waiter."""

    interval_seconds: float = Field(default=30.0, gt=0)
    max_wait_seconds: float = Field(default=6 * 3600.0, gt=0, description="then cancel and fail")
    log_wait_seconds: float = Field(
        default=120.0, ge=0, description="how long to wait for step logs to reach S3 after the end"
    )


@dataclass(frozen=True)
class Outcome:
    """Where the remote work ended: ``ok`` only for the one state that means success."""

    ok: bool
    summary: str  # e.g. "step s-1 FAILED (reason); cluster j-1 TERMINATED_WITH_ERRORS (reason)"
    log_prefix: str | None = None  # s3:// folder holding stdout(.gz) / stderr(.gz), if any
    # EMR steps in cluster mode: s3:// folder of YARN container logs, where the driver's own output
    # (with the Python traceback) lands; the step's stderr only has spark-submit's summary.
    containers_prefix: str | None = None


@dataclass
class Handle:
    """What a launcher started, so it can poll it and cancel exactly that and nothing else."""

    ids: dict[str, str]
    check: Callable[[], Outcome | None]  # None while still running
    cancel: Callable[[], None]
    metadata: dict[str, str] = field(default_factory=dict)


class Timeout(Exception):
    pass


def poll_until_done(
    check: Callable[[], Outcome | None], poll: PollConfig, meanwhile: Callable[[], list[JobEvent]]
) -> Generator[JobEvent, None, Outcome]:
    """The one poll loop: call ``check`` every interval until it returns an outcome or time is up,
    yielding between polls what ``meanwhile`` has (what the job reported so far)."""
    deadline = time.monotonic() + poll.max_wait_seconds
    while (outcome := check()) is None:
        yield from meanwhile()
        if time.monotonic() >= deadline:
            raise Timeout(f"not done after {poll.max_wait_seconds:g} s")
        time.sleep(poll.interval_seconds)
    return outcome


def split_s3(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3a?://([^/]+)/?(.*)", uri)
    if not match:
        raise dg.Failure(f"not an s3:// URI: {uri}")
    return match.group(1), match.group(2)


def join_s3(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def read_logs(s3: Any, prefix_uri: str) -> dict[str, str]:
    """stdout and stderr under an s3:// folder, gunzipped; an empty dict when there are none."""
    bucket, prefix = split_s3(prefix_uri.rstrip("/") + "/")
    found: dict[str, str] = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):  # absent when empty
        name = obj["Key"].rsplit("/", 1)[-1]
        stream = name.removesuffix(".gz")
        if stream in ("stdout", "stderr"):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            found[stream] = (gzip.decompress(body) if name.endswith(".gz") else body).decode(errors="replace")
    return found


YARN_APPLICATION = re.compile(r"application_\d+_\d+")
PYTHON_TRACEBACK = "Traceback (most recent call last):"
# log4j's console lines at INFO or below: Spark's start-up and shutdown chatter, never the cause.
CHATTER = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (INFO|DEBUG|TRACE) ")
JAVA_FRAME = re.compile(r"^\s+(at \S+\(.*\)|\.\.\. \d+ more)$")  # "\tat a.b.C.m(C.scala:1)", "\t... 12 more"


def driver_logs(s3: Any, containers_prefix: str | None, step_stderr: str) -> tuple[str, dict[str, str]]:
    """(container, {stdout, stderr}) of the Spark driver: the application master container (``_000001``)
    of the last attempt of the YARN application the step's spark-submit names; ("", {}) when there
    is none (client mode, no LogUri, or YARN has not shipped the logs to S3 yet)."""
    app = YARN_APPLICATION.findall(step_stderr)
    if not containers_prefix or not app:
        return "", {}
    bucket, prefix = split_s3(f"{containers_prefix.rstrip('/')}/{app[-1]}/")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])  # absent when empty
    # container_[e<epoch>_]<cluster ts>_<app>_<attempt>_<container>: the master is container 000001
    masters = {o["Key"].rsplit("/", 1)[0] for o in listed if o["Key"].split("/")[-2].endswith("_000001")}
    if not masters:
        return "", {}
    driver = max(masters, key=lambda folder: int(folder.rsplit("_", 2)[-2]))  # the last attempt
    return driver.rsplit("/", 1)[-1], read_logs(s3, f"s3://{bucket}/{driver}")


def failure_excerpt(logs: Mapping[str, str], lines: int = EXCERPT_LINES) -> str:
    """What a failure quotes from a driver's logs: its Python traceback, in whichever stream holds it
    (PySpark's driver copies the Python process's stderr to its own stdout), else the stderr tail.
    Without Spark's INFO lines and Java stack frames, so the exception's message is never cut off."""
    for stream in ("stdout", "stderr"):
        start = logs.get(stream, "").find(PYTHON_TRACEBACK)
        if start >= 0:
            return "\n".join(_without_noise(logs[stream][start:])[-lines:])
    return "\n".join(_without_noise(logs.get("stderr", ""))[-lines:]).strip()


def _without_noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if not (CHATTER.match(line) or JAVA_FRAME.match(line))]


def redacted(args: Sequence[str]) -> str:
    """The command with the values of secret-looking settings (and the Pipes pointers) masked."""

    def mask(arg: str) -> str:
        key, sep, _ = arg.partition("=")
        return f"{key}=***" if sep and _SECRET_KEY.search(key) else arg

    return shlex.join(mask(a) for a in args)


class EmrPipesLauncher(SparkLauncher):
    """What the three EMR launchers share: the release, the Pipes transport on S3, the poll loop."""

    release_uri: str = Field(description="s3://<bucket>/<env>/<pipeline>/releases/<id>, as dp deploy wrote")
    messages_uri: str = Field(description="s3:// folder for Pipes context and messages")
    log_uri: str | None = None  # where EMR writes logs; None: failures cannot quote the driver
    spark_conf: dict[str, str] = Field(default_factory=dict)
    region_name: str | None = None
    poll: PollConfig = Field(default_factory=PollConfig)
    python: str | None = None  # [spark.emr] python: overrides the release's interpreter (custom images)
    archives_conf: ClassVar[str] = "spark.yarn.dist.archives"  # spark-submit's --archives, on YARN

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region_name)  # type: ignore[call-overload]

    def entry_point(self, script: str) -> str:
        return join_s3(self.release_uri, "spark_jobs", script)

    def py_files(self) -> str:
        return join_s3(self.release_uri, "spark_jobs.zip")

    def runtime(self) -> SparkRuntime:
        """The runtime of the release the job will run on; a Failure when dp cannot run it."""
        raise NotImplementedError

    def start(
        self,
        context: dg.AssetExecutionContext,
        script: str,
        runtime: SparkRuntime,
        env: Mapping[str, str],
        conf: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> Handle:
        raise NotImplementedError

    def run_job(
        self, context: dg.AssetExecutionContext, script: str, extras: Mapping[str, Any]
    ) -> Generator[JobEvent, None, None]:
        from dp_assets.launchers.s3_pipes import PipesS3ContextInjector, PrefixedS3MessageReader

        runtime = self.runtime()  # before anything is written or started
        dumps = bool(extras.get("dumps"))  # only a run that dumps needs the job environment
        job_env_conf = self.job_env_conf() if dumps else {}
        s3 = self.client("s3")
        bucket, prefix = split_s3(self.messages_uri)
        reader = PrefixedS3MessageReader(
            prefix=join_s3(prefix, "messages"), bucket=bucket, client=s3, interval=self.poll.interval_seconds
        )
        injector = PipesS3ContextInjector(
            bucket=bucket, client=s3, key_prefix=join_s3(prefix, "context") + "/"
        )
        with dg.open_pipes_session(
            context=context,
            context_injector=injector,
            message_reader=reader,
            extras=with_partition_range(context, extras),
        ) as session:
            env = session.get_bootstrap_env_vars()
            if dumps:
                env = {**env, "PYTHONPATH": f"./{job_env.ALIAS}"}
            invocation = session.default_remote_invocation_info
            handle = self.start(context, script, runtime, env, job_env_conf, invocation)
            context.log.info(f"started {handle.ids}")
            reported = Reported(session, handle.metadata)
            outcome = yield from self._wait(context, handle, reported)
            failure = self._forward_logs(context, s3, outcome)
        yield from reported.new()  # what the reader received after the last poll
        if failure is not None:
            raise failure
        if not session.message_handler.received_closed_message:
            raise dg.Failure(
                f"{outcome.summary}, but the job's Pipes session never closed: its report is incomplete",
                metadata=handle.metadata,
            )

    def _wait(
        self, context: dg.AssetExecutionContext, handle: Handle, reported: Reported
    ) -> Generator[JobEvent, None, Outcome]:
        try:
            outcome = yield from poll_until_done(handle.check, self.poll, reported.new)
        except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
            context.log.warning(f"interrupted: cancelling {handle.ids}")
            handle.cancel()
            raise dg.Failure(f"interrupted; cancelled {handle.ids}", metadata=handle.metadata) from exc
        except Timeout as exc:
            handle.cancel()
            raise dg.Failure(f"{handle.ids} timed out ({exc}); cancelled", metadata=handle.metadata) from exc
        except GeneratorExit:  # the run stopped reading (interrupted, or failed, while handling a result)
            context.log.warning(f"the run stopped: cancelling {handle.ids}")
            handle.cancel()
            raise
        context.log.info(outcome.summary)
        return outcome

    def _forward_logs(
        self, context: dg.AssetExecutionContext, s3: Any, outcome: Outcome
    ) -> dg.Failure | None:
        """The step's and, on failure, the driver's stdout/stderr to the run log; on failure, the
        error to raise, with the driver's traceback (or stderr tail). EMR ships logs to S3 after the
        end: wait for them up to ``log_wait_seconds``."""
        deadline = time.monotonic() + self.poll.log_wait_seconds
        logs: dict[str, str] = {}
        if outcome.log_prefix:
            prefix = outcome.log_prefix
            logs = self._await_logs(lambda: read_logs(s3, prefix), lambda found: "stderr" in found, deadline)
        for stream, text in logs.items():
            if text.strip():
                context.log.info(f"{stream} of the step:\n{text}")
        if outcome.ok:
            return None
        container, driver = "", {}
        if outcome.containers_prefix and YARN_APPLICATION.search(logs.get("stderr", "")):
            containers, step_stderr = outcome.containers_prefix, logs["stderr"]
            container, driver = self._await_logs(
                lambda: driver_logs(s3, containers, step_stderr), lambda found: bool(found[1]), deadline
            )
        for stream, text in driver.items():
            if text.strip():
                context.log.info(f"{stream} of the Spark driver ({container}):\n{text}")
        excerpt = failure_excerpt(driver) or failure_excerpt(logs)
        where = outcome.log_prefix or "(no LogUri)"
        return dg.Failure(
            outcome.summary
            + (f"\ndriver output:\n{excerpt}" if excerpt else f"\nno step logs under {where}"),
            metadata={"log_prefix": where},
        )

    def _await_logs(
        self, read: Callable[[], LogsT], ready: Callable[[LogsT], bool], deadline: float
    ) -> LogsT:
        while not ready(found := read()) and time.monotonic() < deadline:
            time.sleep(min(self.poll.interval_seconds, 5.0))
        return found

    def target_runtime(self, release_label: str, serverless: bool = False) -> SparkRuntime:
        """The runtime of a release label, or a Failure naming what dp cannot run."""
        try:
            return emr_runtime(release_label, serverless=serverless, python=self.python)
        except UnsupportedRuntime as e:
            raise dg.Failure(str(e)) from e

    def node_architecture(self) -> str:
        """The CPU the job's containers run on (x86_64 or aarch64); UnsupportedRuntime when it is
        none dp ships the job environment for."""
        raise NotImplementedError

    def job_env_conf(self) -> dict[str, str]:
        """The release's job environment (``job_env``) for the CPU the containers run on, unpacked
        as ./dp_env beside the driver and each executor and put on the executors' Python path (the
        driver's is in its env); a Failure before anything starts when that CPU is not one."""
        from botocore.exceptions import ClientError

        try:
            architecture = self.node_architecture()
        except UnsupportedRuntime as e:
            raise dg.Failure(str(e)) from e
        name = job_env.archive_name(architecture)
        archive = join_s3(self.release_uri, name)
        bucket, key = split_s3(archive)
        try:  # YARN would fail to fetch it deep in the step's logs, minutes into the run
            self.client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            raise dg.Failure(
                f"the release {self.release_uri} has no {name} ({code}), the job environment for the "
                f"{architecture} nodes this run dumps on; releases deployed before dp shipped one per "
                "architecture lack it: run `dp deploy` and pin the config it prints"
            ) from e
        return {
            self.archives_conf: f"{archive}#{job_env.ALIAS}",
            "spark.executorEnv.PYTHONPATH": f"./{job_env.ALIAS}",
        }

    def submit_parameters(self, runtime: SparkRuntime, conf: Mapping[str, str]) -> list[str]:
        """spark-submit's options: the configured conf, dp's pinned settings for the runtime, then
        ``conf``, then the release's zip."""
        args: list[str] = []
        for key, value in {**self.spark_conf, **pinned_conf(runtime, self.ansi), **conf}.items():
            args += ["--conf", f"{key}={value}"]
        return [*args, "--py-files", self.py_files()]


def reason(status: Mapping[str, Any]) -> str:
    """StateChangeReason and FailureDetails of an EMR step or cluster status, as one line."""
    change = status.get("StateChangeReason") or {}
    failure = status.get("FailureDetails") or {}
    parts = [change.get("Code"), change.get("Message"), failure.get("Reason"), failure.get("Message")]
    if failure.get("LogFile"):
        parts.append(f"log {failure['LogFile']}")
    return "; ".join(str(p) for p in parts if p) or "no reason given"


class _EmrStepLauncher(EmrPipesLauncher):
    """A command-runner.jar step running spark-submit; Pipes env reaches the driver as YARN env."""

    def step(
        self,
        script: str,
        runtime: SparkRuntime,
        env: Mapping[str, str],
        conf: Mapping[str, str],
        action_on_failure: str,
    ) -> dict[str, Any]:
        conf = {**conf, **{f"spark.yarn.appMasterEnv.{k}": v for k, v in env.items()}}
        args = ["spark-submit", "--deploy-mode", "cluster", *self.submit_parameters(runtime, conf)]
        return {
            "Name": f"dp {script}",
            "ActionOnFailure": action_on_failure,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": [*args, self.entry_point(script)]},
        }

    def step_check(self, emr: Any, cluster_id: str, step_id: str, transient: bool) -> Outcome | None:
        """Done when the step is done (and, for a transient cluster, the cluster has terminated),
        or when the cluster ended under a step that never finished."""
        # The cluster first. A step's end state is set before its cluster leaves TERMINATING (minutes
        # on EMR), so a step read after the cluster read is at least as recent. Read the other way
        # round, a step finishing between the two calls looks RUNNING on a TERMINATED cluster: a false
        # failure (seen on the emulator, where the cluster terminates at once).
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        step = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]
        step_state, cluster_state = step["State"], cluster["Status"]["State"]
        cluster_done = cluster_state in CLUSTER_DONE
        if step_state not in STEP_DONE and not cluster_done:
            return None
        if step_state in STEP_DONE and transient and not cluster_done:
            return None  # the transient cluster is still terminating; its end state counts too
        summary = f"EMR step {step_id} {step_state}" + (
            f" ({reason(step)})" if step_state != "COMPLETED" else ""
        )
        if transient or cluster_done:
            summary += f"; cluster {cluster_id} {cluster_state} ({reason(cluster['Status'])})"
        ok = step_state == "COMPLETED" and cluster_state != "TERMINATED_WITH_ERRORS"
        log_uri = cluster.get("LogUri") or self.log_uri
        logs = join_s3(log_uri, cluster_id, "steps", step_id) if log_uri else None
        containers = join_s3(log_uri, cluster_id, "containers") if log_uri else None
        return Outcome(ok=ok, summary=summary, log_prefix=logs, containers_prefix=containers)


class EmrLauncher(_EmrStepLauncher):
    """A transient cluster per run: one step, and the cluster terminates when the step ends."""

    # The cluster's settings, all from [spark.emr.cluster] (config.model.EmrCluster holds the defaults).
    log_uri: str | None = Field(description="the cluster's LogUri")
    cluster_name: str
    release_label: str
    applications: list[str]
    master_instance_type: str
    core_instance_type: str
    core_instance_count: int = Field(ge=0)
    subnet_id: str | None
    job_flow_role: str
    service_role: str
    bootstrap_actions: list[dict[str, Any]]  # {name, path, args}
    configurations: list[dict[str, Any]]  # EMR Configurations, as given
    tags: dict[str, str]

    def runtime(self) -> SparkRuntime:
        return self.target_runtime(self.release_label)

    def node_architecture(self) -> str:
        # the driver (cluster deploy mode) and the executors run in containers on the core nodes
        nodes = self.core_instance_type if self.core_instance_count else self.master_instance_type
        return instance_architecture(nodes)

    def start(
        self,
        context: dg.AssetExecutionContext,
        script: str,
        runtime: SparkRuntime,
        env: Mapping[str, str],
        conf: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> Handle:
        emr = self.client("emr")
        groups = [{"InstanceRole": "MASTER", "InstanceType": self.master_instance_type, "InstanceCount": 1}]
        if self.core_instance_count:
            groups.append(
                {
                    "InstanceRole": "CORE",
                    "InstanceType": self.core_instance_type,
                    "InstanceCount": self.core_instance_count,
                }
            )
        instances: dict[str, Any] = {"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": False}
        if self.subnet_id:
            instances["Ec2SubnetId"] = self.subnet_id
        step = self.step(script, runtime, env, conf, "TERMINATE_CLUSTER")
        context.log.info(f"run_job_flow on {runtime.describe()}: {redacted(step['HadoopJarStep']['Args'])}")
        cluster_id = emr.run_job_flow(
            Name=f"{self.cluster_name} {context.run.run_id[:8]} {script}",
            ReleaseLabel=self.release_label,
            LogUri=self.log_uri,
            Instances=instances,
            Applications=[{"Name": a} for a in self.applications],
            JobFlowRole=self.job_flow_role,
            ServiceRole=self.service_role,
            Tags=[{"Key": k, "Value": v} for k, v in {**self.tags, **tags}.items()],
            Steps=[step],
            BootstrapActions=[
                {"Name": b["name"], "ScriptBootstrapAction": {"Path": b["path"], "Args": b.get("args", [])}}
                for b in self.bootstrap_actions
            ],
            Configurations=self.configurations,
        )["JobFlowId"]
        step_id = emr.list_steps(ClusterId=cluster_id)["Steps"][0]["Id"]
        return Handle(
            ids={"cluster": cluster_id, "step": step_id},
            check=lambda: self.step_check(emr, cluster_id, step_id, transient=True),
            cancel=lambda: emr.terminate_job_flows(JobFlowIds=[cluster_id]),  # the cluster is ours
            metadata={"emr_cluster_id": cluster_id, "emr_step_id": step_id},
        )


LIVE_INSTANCES = ["AWAITING_FULFILLMENT", "PROVISIONING", "BOOTSTRAPPING", "RUNNING"]


def container_nodes(emr: Any, cluster: dict[str, Any]) -> list[str]:
    """The instance types of a running cluster's live nodes that host YARN containers: its core and
    task nodes (instance groups or fleets), or the master alone when it has none."""
    listing = emr.get_paginator("list_instances")

    def live(**role: Any) -> list[str]:
        pages = listing.paginate(ClusterId=cluster["Id"], InstanceStates=LIVE_INSTANCES, **role)
        return sorted({i["InstanceType"] for page in pages for i in page["Instances"]})

    if cluster.get("InstanceCollectionType") == "INSTANCE_FLEET":
        workers = live(InstanceFleetType="CORE") + live(InstanceFleetType="TASK")
        return workers or live(InstanceFleetType="MASTER")
    return live(InstanceGroupTypes=["CORE", "TASK"]) or live(InstanceGroupTypes=["MASTER"])


SERVERLESS_ARCHITECTURES = {"X86_64": "x86_64", "ARM64": "aarch64"}


class EmrExistingLauncher(_EmrStepLauncher):
    """A step on a long-running cluster someone else owns: on interrupt only our step is cancelled."""

    cluster_id: str

    def runtime(self) -> SparkRuntime:
        cluster = self.client("emr").describe_cluster(ClusterId=self.cluster_id)["Cluster"]
        return self.target_runtime(cluster.get("ReleaseLabel", "(no release label)"))

    def node_architecture(self) -> str:
        emr = self.client("emr")
        cluster = emr.describe_cluster(ClusterId=self.cluster_id)["Cluster"]
        return one_architecture(f"cluster {self.cluster_id}", container_nodes(emr, cluster))

    def start(
        self,
        context: dg.AssetExecutionContext,
        script: str,
        runtime: SparkRuntime,
        env: Mapping[str, str],
        conf: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> Handle:
        emr = self.client("emr")
        # CONTINUE: a failed step must not take the shared cluster down
        step = self.step(script, runtime, env, conf, "CONTINUE")
        context.log.info(
            f"add_job_flow_steps on {self.cluster_id}, {runtime.describe()}: "
            f"{redacted(step['HadoopJarStep']['Args'])}"
        )
        step_id = emr.add_job_flow_steps(JobFlowId=self.cluster_id, Steps=[step])["StepIds"][0]
        cluster_id = self.cluster_id

        def cancel() -> None:
            emr.cancel_steps(ClusterId=cluster_id, StepIds=[step_id], StepCancellationOption="SEND_INTERRUPT")

        return Handle(
            ids={"cluster": cluster_id, "step": step_id},
            check=lambda: self.step_check(emr, cluster_id, step_id, transient=False),
            cancel=cancel,
            metadata={"emr_cluster_id": cluster_id, "emr_step_id": step_id},
        )


class EmrServerlessLauncher(EmrPipesLauncher):
    """A job run on an EMR Serverless application; Pipes env reaches the driver as driverEnv."""

    archives_conf: ClassVar[str] = "spark.archives"  # EMR Serverless is no YARN

    application_id: str
    execution_role_arn: str
    tags: dict[str, str] = Field(default_factory=dict)

    def runtime(self) -> SparkRuntime:
        client = self.client("emr-serverless")
        application = client.get_application(applicationId=self.application_id)["application"]
        return self.target_runtime(application.get("releaseLabel", "(no release label)"), serverless=True)

    def node_architecture(self) -> str:
        client = self.client("emr-serverless")
        application = client.get_application(applicationId=self.application_id)["application"]
        architecture = application.get("architecture", "X86_64")  # AWS's default
        if architecture not in SERVERLESS_ARCHITECTURES:
            raise UnsupportedRuntime(
                f"EMR Serverless application {self.application_id} runs on {architecture}; dp ships the "
                f"job environment for {', '.join(SERVERLESS_ARCHITECTURES)}"
            )
        return SERVERLESS_ARCHITECTURES[architecture]

    def start(
        self,
        context: dg.AssetExecutionContext,
        script: str,
        runtime: SparkRuntime,
        env: Mapping[str, str],
        conf: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> Handle:
        client = self.client("emr-serverless")
        conf = {**conf, **{f"spark.emr-serverless.driverEnv.{k}": v for k, v in env.items()}}
        parameters = self.submit_parameters(runtime, conf)
        entry_point = self.entry_point(script)
        context.log.info(
            f"start_job_run on {self.application_id}, {runtime.describe()}: "
            f"{redacted([*parameters, entry_point])}"
        )
        overrides: dict[str, Any] = {}
        if self.log_uri:
            overrides["monitoringConfiguration"] = {"s3MonitoringConfiguration": {"logUri": self.log_uri}}
        app_id = self.application_id
        run_id = client.start_job_run(
            applicationId=app_id,
            executionRoleArn=self.execution_role_arn,
            name=f"dp {script}",
            jobDriver={
                "sparkSubmit": {
                    "entryPoint": entry_point,
                    "sparkSubmitParameters": shlex.join(parameters),
                }
            },
            configurationOverrides=overrides,
            tags={**self.tags, **tags},
        )["jobRunId"]

        def check() -> Outcome | None:
            run = client.get_job_run(applicationId=app_id, jobRunId=run_id)["jobRun"]
            state = run["state"]
            if state not in JOB_RUN_DONE:
                return None
            details = run.get("stateDetails") or "no reason given"
            summary = f"EMR Serverless job run {run_id} {state}" + (
                f" ({details})" if state != "SUCCESS" else ""
            )
            logs = join_s3(self.log_uri, "applications", app_id, "jobs", run_id, "SPARK_DRIVER")
            return Outcome(ok=state == "SUCCESS", summary=summary, log_prefix=logs if self.log_uri else None)

        return Handle(
            ids={"application": app_id, "job_run": run_id},
            check=check,
            cancel=lambda: client.cancel_job_run(applicationId=app_id, jobRunId=run_id),
            metadata={"emr_serverless_application_id": app_id, "emr_serverless_job_run_id": run_id},
        )
