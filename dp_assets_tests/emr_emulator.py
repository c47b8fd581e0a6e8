"""An EMR / EMR Serverless emulator on moto's in-process server, as a pytest fixture.

moto keeps clusters, steps and job runs but never runs them: steps stay RUNNING or PENDING forever,
job runs are born SUCCESS, and CancelSteps is not implemented. This emulator watches moto's backends
from a thread, and for each new step or job run it fetches the entry script and ``--py-files`` from
moto S3, unpacks the archives (``spark.yarn.dist.archives`` / ``spark.archives``) into the driver's
folder under their aliases, takes the Pipes env from the spark-submit ``--conf``s
(``spark.yarn.appMasterEnv.*`` / ``spark.emr-serverless.driverEnv.*``), runs the job locally
through a pluggable runner (``python_runner`` here, ``release_runner`` for real Spark), writes
stdout/stderr gzipped where EMR would, and sets the end states in moto the way EMR does. ``Faults``
injects what EMR can do to a run. Ask for the ``emr_emulator`` fixture (conftest registers it).

``release_runner`` runs a job on the runtime of its cluster's (or application's) release label:
the Spark that release ships (``runtimes.emr_spark_home``) and the interpreter the job asks for
(``spark.pyspark.python``, else the image's ``/usr/bin/python3``), each EMR path mapped to the
CPython standing in for it, so a job the release cannot run fails here too. The driver runs as in
cluster deploy mode: in a folder of its own, with only the shipped files and an environment of the
step's ``appMasterEnv``/``driverEnv`` plus the instance's basics, none of the test process's. A
Hive metastore per cluster or application (Derby) stands in for the Glue Data Catalog.
"""

from __future__ import annotations

import _thread
import gzip
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.backends import get_backend
from moto.core.responses import ActionResult
from moto.emr.models import Cluster, Step
from moto.emr.responses import ElasticMapReduceResponse
from moto.emrserverless.models import EMRServerlessBackend, JobRun

from dp_assets.launchers.local import catalog_conf
from dp_assets_tests.jvm import fast_start_options
from dp_assets_tests.runtimes import EMR_INTERPRETERS, emr_spark_home, node_python

ACCOUNT, REGION = "123456789012", "us-east-1"
AWS_ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")
YARN_ENV, SERVERLESS_ENV = "spark.yarn.appMasterEnv.", "spark.emr-serverless.driverEnv."
TICK = 0.05
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"  # a node's PATH: no venv of the test process on it


@dataclass(frozen=True)
class LocalCommand:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """What the job runs on: the release label and the metastore folder of its cluster/application."""

    release_label: str
    metastore: Path


# (entry script, --py-files, spark conf other than the driver env, target) -> the local command
Runner = Callable[[Path, list[Path], dict[str, str], Target], LocalCommand]
PYTHON_CONFS = ("spark.pyspark.python", "spark.pyspark.driver.python")
ARCHIVES_CONFS = ("spark.yarn.dist.archives", "spark.archives")  # EMR on EC2 (YARN), EMR Serverless
# What a cluster node's environment has before the step adds its own: no test-process settings.
NODE_ENV = ("HOME", "JAVA_HOME", "LANG", "LC_ALL", "TMPDIR", *AWS_ENV_KEYS)


def python_runner(script: Path, py_files: list[Path], conf: dict[str, str], target: Target) -> LocalCommand:
    """The job as plain Python: the zip goes on PYTHONPATH, which is what --py-files does."""
    return LocalCommand([sys.executable, str(script)], {"PYTHONPATH": os.pathsep.join(map(str, py_files))})


def release_runner(master: str = "local[2]") -> Runner:
    """Real Spark on the release's runtime (set ``emulator.runner``): its Spark, the interpreter the
    job asks for as the release has it, and a Hive metastore standing in for Glue."""

    def run(script: Path, py_files: list[Path], conf: dict[str, str], target: Target) -> LocalCommand:
        home = emr_spark_home(target.release_label)
        conf = {**conf, **catalog_conf(str(target.metastore))}
        for key in PYTHON_CONFS:  # unset: Spark runs the image's python3
            asked = conf.get(key, "/usr/bin/python3")
            conf[key] = node_python(EMR_INTERPRETERS[asked]) if asked in EMR_INTERPRETERS else asked
        conf["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={target.metastore}"
        argv = [str(home / "bin" / "spark-submit"), "--master", master]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        if py_files:
            argv += ["--py-files", ",".join(map(str, py_files))]
        fast_start = fast_start_options(home, node_python("3.11"))  # a test's JVM, not a node's: jvm.py
        return LocalCommand([*argv, str(script)], {"SPARK_HOME": str(home), "SPARK_SUBMIT_OPTS": fast_start})

    return run


@dataclass
class Faults:
    """What EMR can do to a run, beyond the job failing by itself."""

    cancel_step: bool = False  # an operator cancels the step (or job run) once it runs
    interrupt: bool = False  # the Dagster run is interrupted (KeyboardInterrupt) once the job runs
    cluster_terminates_with_errors: bool = False  # the cluster ends TERMINATED_WITH_ERRORS anyway
    no_logs: bool = False  # nothing is written under LogUri


@dataclass
class SparkSubmit:
    conf: dict[str, str]
    py_files: list[str]
    entry_point: str
    args: list[str]
    deploy_mode: str = "client"


def parse_spark_submit(args: list[str]) -> SparkSubmit:
    """spark-submit's options we need: --conf, --py-files, the entry point and its arguments."""
    conf: dict[str, str] = {}
    py_files: list[str] = []
    deploy_mode = "client"
    i = 0
    while i < len(args) and args[i].startswith("--"):
        option, value = args[i], args[i + 1]
        if option == "--conf":
            key, _, val = value.partition("=")
            conf[key] = val
        elif option == "--py-files":
            py_files += value.split(",")
        elif option == "--deploy-mode":
            deploy_mode = value
        i += 2
    return SparkSubmit(conf, py_files, args[i], args[i + 1 :], deploy_mode)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass
class Ended:
    code: int | None  # None: killed
    stdout: str
    stderr: str


def spark_submit_summary(app: str, code: int | None) -> str:
    """What a cluster-mode spark-submit prints to the step's stderr: the application, not its output."""
    status = "SUCCEEDED" if code == 0 else "KILLED" if code is None else "FAILED"
    lines = [
        f"INFO Client: Submitting application {app} to ResourceManager",
        f"INFO Client: Application report for {app} (state: FINISHED)",
        f"\t final status: {status}",
    ]
    if code != 0:
        lines.append(
            'Exception in thread "main" org.apache.spark.SparkException: '
            f"Application {app} finished with failed status"
        )
    return "\n".join(lines) + "\n"


class EmrEmulator:
    def __init__(self, endpoint: str, workdir: Path, runner: Runner = python_runner):
        self.endpoint = endpoint
        self.workdir = workdir
        self.runner = runner
        self.faults = Faults()
        self.cancel_requests: list[tuple[str, list[str]]] = []  # (cluster id, step ids) per CancelSteps
        self.commands: list[LocalCommand] = []
        self._cancelled: set[str] = set()  # step ids and job run ids to kill
        self._seen: set[str] = set()
        self._applications = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="emr-emulator")
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)

    @property
    def emr(self) -> Any:
        return get_backend("emr")[ACCOUNT][REGION]

    @property
    def serverless(self) -> Any:
        return get_backend("emr-serverless")[ACCOUNT][REGION]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Teach moto what it lacks: CancelSteps, FailureDetails, job runs that start SUBMITTED."""
        emulator = self

        def cancel_steps(response: ElasticMapReduceResponse) -> ActionResult:
            cluster_id, step_ids = response._get_param("ClusterId"), response._get_param("StepIds", [])
            emulator.cancel_requests.append((cluster_id, list(step_ids)))
            emulator._cancelled.update(step_ids)
            for step in response.backend.clusters[cluster_id].steps:
                if step.id in step_ids and step.state == "PENDING":
                    step.state = "CANCELLED"
            info = [{"StepId": s, "Status": "SUBMITTED", "Reason": ""} for s in step_ids]
            return ActionResult({"CancelStepsInfoList": info})

        status = Step.status.fget
        assert status is not None

        def step_status(step: Step) -> dict[str, Any]:
            details = getattr(step, "failure_details", None)
            return {**status(step), **({"FailureDetails": details} if details else {})}

        start_job_run, cancel_job_run = (
            EMRServerlessBackend.start_job_run,
            EMRServerlessBackend.cancel_job_run,
        )

        def start_submitted(backend: EMRServerlessBackend, *args: Any, **kwargs: Any) -> JobRun:
            run = start_job_run(backend, *args, **kwargs)
            run.state = "SUBMITTED"  # moto says SUCCESS before anything ran
            return run

        def cancel(backend: EMRServerlessBackend, application_id: str, job_run_id: str) -> tuple[str, str]:
            emulator._cancelled.add(job_run_id)
            return cancel_job_run(backend, application_id, job_run_id)

        monkeypatch.setattr(ElasticMapReduceResponse, "cancel_steps", cancel_steps, raising=False)
        monkeypatch.setattr(Step, "status", property(step_status))
        monkeypatch.setattr(EMRServerlessBackend, "start_job_run", start_submitted)
        monkeypatch.setattr(EMRServerlessBackend, "cancel_job_run", cancel)

    def start(self) -> None:
        # What earlier tests left in the session's moto server is not ours to run.
        self._seen |= {s.id for c in self.emr.clusters.values() for s in c.steps}
        self._seen |= {r.id for runs in self.serverless.job_runs.values() for r in runs}
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for cluster in list(self.emr.clusters.values()):
                step = next((s for s in cluster.steps if s.state in ("PENDING", "RUNNING")), None)
                if step is not None and step.id not in self._seen and cluster.state not in ("TERMINATED",):
                    self._seen.add(step.id)
                    threading.Thread(target=self._run_step, args=(cluster, step), daemon=True).start()
            for runs in list(self.serverless.job_runs.values()):
                for run in list(runs):
                    if run.state == "SUBMITTED" and run.id not in self._seen:
                        self._seen.add(run.id)
                        threading.Thread(target=self._run_job_run, args=(run,), daemon=True).start()
            time.sleep(TICK)

    def _execute(
        self,
        job_id: str,
        submit: SparkSubmit,
        driver_env: Mapping[str, str],
        target: Target,
        gone: Callable[[], bool],
    ) -> Ended:
        """Fetch the release files, run the job, apply faults; kill it when cancelled or ``gone()``."""
        folder = Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=self.workdir))

        def fetch(uri: str) -> Path:
            bucket, key = split_s3(uri)
            local = folder / key.rsplit("/", 1)[-1]
            local.write_bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            return local

        script, py_files = fetch(submit.entry_point), [fetch(u) for u in submit.py_files]
        for key in ARCHIVES_CONFS:  # localized as YARN and EMR Serverless do: unpacked in the cwd
            for uri, _, alias in (a.partition("#") for a in submit.conf.get(key, "").split(",") if a):
                with zipfile.ZipFile(fetch(uri)) as archive:
                    archive.extractall(folder / (alias or uri.rsplit("/", 1)[-1]))
        spark_conf = {
            k: v
            for k, v in submit.conf.items()
            if not k.startswith((YARN_ENV, SERVERLESS_ENV)) and k not in ARCHIVES_CONFS
        }
        command = self.runner(script, py_files, spark_conf, target)
        self.commands.append(command)
        node = {k: os.environ[k] for k in NODE_ENV if k in os.environ}
        env = {**node, "PATH": SYSTEM_PATH, "AWS_ENDPOINT_URL": self.endpoint, **command.env, **driver_env}
        # the driver's PYTHONPATH is the step's, then what --py-files adds (as YARN composes it)
        if paths := [p for p in (driver_env.get("PYTHONPATH"), command.env.get("PYTHONPATH")) if p]:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        out, err = folder / "stdout", folder / "stderr"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                [*command.argv, *submit.args], env=env, cwd=folder, stdout=stdout, stderr=stderr
            )
            started, faulted = time.monotonic(), False
            while proc.poll() is None:
                if not faulted and time.monotonic() - started > 0.5:
                    faulted = True
                    if self.faults.cancel_step:
                        self._cancelled.add(job_id)
                    if self.faults.interrupt:
                        _thread.interrupt_main()  # what a terminated Dagster run worker sees
                if job_id in self._cancelled or gone():
                    proc.kill()
                    proc.wait()
                    return Ended(None, out.read_text(), err.read_text())
                time.sleep(TICK)
        return Ended(proc.returncode, out.read_text(), err.read_text())

    def _write_logs(self, prefix_uri: str | None, ended: Ended) -> str | None:
        if not prefix_uri or self.faults.no_logs:
            return None
        bucket, prefix = split_s3(prefix_uri.rstrip("/"))
        for name, text in (("stdout", ended.stdout), ("stderr", ended.stderr)):
            self.s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}.gz", Body=gzip.compress(text.encode()))
        return f"{prefix_uri.rstrip('/')}/stderr.gz"

    def _run_step(self, cluster: Cluster, step: Step) -> None:
        step.state, cluster.state = "RUNNING", "RUNNING"
        step.start()
        args = list(step.args)
        if args[:1] != ["spark-submit"]:
            raise ValueError(f"the emulator runs spark-submit steps only, not {args[:1]}")
        submit = parse_spark_submit(args[1:])
        env = {k.removeprefix(YARN_ENV): v for k, v in submit.conf.items() if k.startswith(YARN_ENV)}
        target = Target(cluster.release_label, self.workdir / "metastores" / cluster.id)
        ended = self._execute(
            step.id, submit, env, target, lambda: cluster.state in ("TERMINATING", "TERMINATED")
        )
        root = f"{cluster.log_uri.rstrip('/')}/{cluster.id}" if cluster.log_uri else None
        if submit.deploy_mode == "cluster":  # the driver ran in a YARN container; its output lands there
            app = f"application_{int(time.time() * 1000)}_{next(self._applications):04d}"
            container = f"container_{app.removeprefix('application_')}_01_000001"
            self._write_logs(f"{root}/containers/{app}/{container}" if root else None, ended)
            ended = Ended(ended.code, "", spark_submit_summary(app, ended.code))
        log_file = self._write_logs(f"{root}/steps/{step.id}" if root else None, ended)
        if ended.code == 0:
            step.state = "COMPLETED"
        elif ended.code is None:
            step.state = "CANCELLED"
            step.last_state_change_reason = "Cancelled by request"
        else:
            step.state = "FAILED"
            step.failure_details = {
                "Reason": "Unknown Error.",
                "Message": f"step exited with code {ended.code}",
                **({"LogFile": log_file} if log_file else {}),
            }
        step.end_date_time = step.start_date_time
        if cluster.state in ("TERMINATING", "TERMINATED"):
            return  # terminated under the step (terminate_job_flows)
        more = any(s.state == "PENDING" for s in cluster.steps)
        if self.faults.cluster_terminates_with_errors:
            cluster.state = "TERMINATED_WITH_ERRORS"
            cluster.last_state_change_reason = "INTERNAL_ERROR: injected by the emulator"
        elif not more and not cluster.keep_job_flow_alive_when_no_steps:
            failed = step.state != "COMPLETED" and step.action_on_failure != "CONTINUE"
            cluster.state = "TERMINATED_WITH_ERRORS" if failed else "TERMINATED"
            cluster.last_state_change_reason = (
                "STEP_FAILURE: Shut down as step failed" if failed else "ALL_STEPS_COMPLETED: Steps completed"
            )
        else:
            cluster.state = "WAITING" if not more else "RUNNING"

    def _run_job_run(self, run: JobRun) -> None:
        run.state = "RUNNING"
        driver = (run.job_driver or {}).get("sparkSubmit", {})
        parameters = shlex.split(str(driver.get("sparkSubmitParameters", "")))
        submit = parse_spark_submit(
            [*parameters, str(driver["entryPoint"]), *driver.get("entryPointArguments", [])]
        )
        env = {
            k.removeprefix(SERVERLESS_ENV): v for k, v in submit.conf.items() if k.startswith(SERVERLESS_ENV)
        }
        application = self.serverless.applications[run.application_id]
        target = Target(application.release_label, self.workdir / "metastores" / application.id)
        ended = self._execute(run.id, submit, env, target, lambda: run.state == "CANCELLED")
        monitoring = (run.configuration_overrides or {}).get("monitoringConfiguration", {})
        log_uri = monitoring.get("s3MonitoringConfiguration", {}).get("logUri")
        prefix = (
            f"{log_uri.rstrip('/')}/applications/{run.application_id}/jobs/{run.id}/SPARK_DRIVER"
            if log_uri
            else None
        )
        self._write_logs(prefix, ended)
        if ended.code == 0:
            run.state = "SUCCESS"
        elif ended.code is None:
            run.state, run.state_details = "CANCELLED", "Job run cancelled by request"
        else:
            last = (ended.stderr.strip().splitlines() or [""])[-1]
            run.state = "FAILED"
            run.state_details = f"Job failed, please check complete logs. ExitCode: {ended.code}. {last}"


def shared_cluster(
    log_uri: str | None = None,
    release_label: str = "emr-7.5.0",
    master: str = "m5.xlarge",
    workers: Mapping[str, str] | None = None,
) -> str:
    """A long-running cluster in moto that someone else owns (for emr-existing); its id. ``workers``:
    instance type by role (CORE, TASK) of its other instance groups; none by default."""
    groups = [{"InstanceRole": "MASTER", "InstanceType": master, "InstanceCount": 1}]
    groups += [
        {"InstanceRole": role, "InstanceType": t, "InstanceCount": 2} for role, t in (workers or {}).items()
    ]
    return boto3.client("emr").run_job_flow(
        Name="shared",
        ReleaseLabel=release_label,
        **({"LogUri": log_uri} if log_uri else {}),
        Instances={"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]


def serverless_application(release_label: str = "emr-7.5.0", architecture: str = "X86_64") -> str:
    """An EMR Serverless Spark application in moto; its id. dp runs on a 7.x one only with
    ``[spark.emr] python`` naming a custom image's interpreter (7.x images have Python 3.9). moto
    drops the application's ``architecture``; it is kept here, as AWS keeps it."""
    client = boto3.client("emr-serverless")
    application_id = client.create_application(
        name="dp", releaseLabel=release_label, type="SPARK", architecture=architecture
    )["applicationId"]
    get_backend("emr-serverless")[ACCOUNT][REGION].applications[application_id].architecture = architecture
    return application_id


@pytest.fixture(name="emr_emulator")
def emr_emulator_fixture(aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[EmrEmulator]:
    """moto with EMR steps and EMR Serverless job runs that really run (``aws`` is conftest's)."""
    workdir = tmp_path / "emr-emulator"
    workdir.mkdir()
    emulator = EmrEmulator(aws, workdir)
    emulator.install(monkeypatch)
    emulator.start()
    yield emulator
    emulator.stop()
