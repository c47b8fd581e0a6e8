"""Spark on this machine: ``spark-submit --master local[*]`` as a Pipes subprocess.

By default the Spark and Python of this environment (the locked pyspark beside this interpreter).
``DP_SPARK_HOME`` and ``DP_SPARK_PYTHON`` point it at another Spark installation and interpreter,
e.g. a pyspark 3.5 package and Python 3.11, the runtime of EMR 7: the jobs then run on that runtime
exactly as a cluster would run them, from the same ``spark_jobs.zip`` and, when that interpreter
lacks pyarrow and numpy, the same job environment (``job_env``) a cluster gets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import Any, cast

import dagster as dg
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR, encode_param
from pydantic import Field

from dp_assets.launchers import job_env
from dp_assets.launchers.base import (
    JobEvent,
    Reported,
    SparkLauncher,
    local_spark_jobs_zip,
    spark_jobs_dir,
    with_partition_range,
)
from dp_assets.launchers.runtime import SparkRuntime, UnsupportedRuntime, local_runtime, pinned_conf
from spark_jobs.contract import AWAIT_RUN_KEY, QUICK_JIT, RUN_SCRIPT, RunSpec

SPARK_HOME_ENV, SPARK_PYTHON_ENV = "DP_SPARK_HOME", "DP_SPARK_PYTHON"


def default_spark_home() -> str:
    """The pyspark package installed beside this interpreter: a complete Spark (bin/, jars/)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise dg.Failure("pyspark is not installed in this environment: run `uv sync`, or set DP_SPARK_HOME")
    return str(Path(spec.origin).parent)


def catalog_conf(catalog_dir: str) -> dict[str, str]:
    """Spark settings for a persistent local catalog: an embedded Derby metastore in catalog_dir.

    Derby admits one Spark application at a time, so local loads share the ``spark`` pool.
    """
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={catalog_dir}/metastore_db;create=true"
        ),
        "spark.sql.warehouse.dir": f"{catalog_dir}/warehouse",
        # Publishing adds each partition with its version's location; without this the metastore
        # lists every such folder to store file counts and sizes nobody reads (as Glue does not).
        "spark.hadoop.hive.stats.autogather": "false",
    }


# How often the reader looks for the job's next message: often enough for progress lines, seldom
# enough not to take a core's time from Spark (Dagster's own reader's 10 ms cost 4 s of CPU in a demo).
POLL_SECONDS = 0.1
# How often a run hands on what its job reported so far (Dagster stores each event as it comes).
REPORT_SECONDS = 0.5
STOP_SECONDS = 20.0  # after SIGINT, for the job to stop Spark and close its Pipes session


def complete_lines(path: str, should_stop: Callable[[], bool]) -> Iterator[str]:
    """Lines of a file another process appends to, each only once its newline is written (a
    ``readline`` at the end of a file returns whatever part of a line is there so far)."""
    pending = ""
    with open(path, encoding="utf-8") as stream:
        while True:
            pending += stream.readline()
            if pending.endswith("\n"):
                yield pending
                pending = ""
            elif should_stop():
                if pending.strip():  # the writer died mid-line: let the parse error name it
                    yield pending
                return
            else:
                time.sleep(POLL_SECONDS)


class LineSafeFileMessageReader(dg.PipesFileMessageReader):
    """Dagster's file reader parses every ``readline``, so a large message read while the job was
    still writing it failed with JSONDecodeError and killed the reader thread: every message after
    it (the checks) was lost. This one parses complete lines only."""

    def _reader_thread(self, handler: Any, is_resource_complete: Event) -> None:
        try:
            for line in complete_lines(self._path, is_resource_complete.is_set):
                handler.handle_message(json.loads(line))
        except:
            handler.report_pipes_framework_exception(f"{type(self).__name__} reader thread", sys.exc_info())
            raise


class HandOverContextInjector(dg.PipesContextInjector):
    """Writes a run's context where the application started ahead of it waits for it (``warm_start``):
    whole, by rename, so the job never reads half a file."""

    def __init__(self, path: str) -> None:
        self._path = path

    @contextmanager
    def inject_context(self, context_data: Any) -> Iterator[dict[str, Any]]:
        partial = f"{self._path}.partial"
        with open(partial, "w", encoding="utf-8") as stream:
            json.dump(context_data, stream)
        os.replace(partial, self._path)
        try:
            yield {"path": self._path}
        finally:  # it holds the run's S3 credentials
            with suppress(FileNotFoundError):  # a failure here must not replace the step's own
                os.remove(self._path)

    def no_messages_debug_text(self) -> str:
        return f"The run's context was handed over in {self._path}."


@dataclass(frozen=True)
class WarmApplication:
    """A run's Spark application started before the run, waiting in ``await_run`` for its Pipes files."""

    command: list[str]
    process: subprocess.Popen[bytes]
    context_path: str
    messages_path: str


# Started by ``warm_start``, until a run's step takes it over; one at most (Derby admits one application).
_warm: list[WarmApplication] = []


def spawn(command: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A Spark application: spark-submit, in this process's group (a run killed with its group takes
    Spark with it, and the lake's table lock counts that group alive until all of it is gone)."""
    return subprocess.Popen(command, env=env)


def take_warm(command: list[str]) -> WarmApplication | None:
    """The waiting application when it runs ``command`` and is still alive; any other is stopped, so
    the one the step starts is the only application on the catalog."""
    warm = _warm.pop() if _warm else None
    if warm is not None and (warm.command != command or warm.process.poll() is not None):
        stop(warm.process)
        return None
    return warm


def input_bytes(spec: RunSpec) -> int | None:
    """The bytes a run's application reads, when its spec tells: what its dumps were delivered (or
    extracted). None when it also loads, or derives from, days dumped before, whose size is in the lake."""
    dumped = {
        d["table"]: sum(f["size"] for files in d["delivered"].values() for f in files)
        + sum(e["bytes"] for entries in (d["extracted"] or {}).values() for e in entries)
        for d in spec["dumps"]
    }
    derives = {d["table"]: list(d["upstream"]) for d in spec["derives"]}
    return known_input(dumped, [load["table"] for load in spec["loads"]], derives)


def known_input(
    dumped: Mapping[str, int], loads: Iterable[str], derives: Mapping[str, Iterable[str]]
) -> int | None:
    """The bytes a run reads when it dumps (``dumped``: table -> bytes) what it loads, and derives from
    what it loads or derives; else None (it reads what earlier runs wrote, of a size not listed here)."""
    built = {*loads, *derives}
    if not set(loads) <= set(dumped) or any(u not in built for up in derives.values() for u in up):
        return None
    return sum(dumped.values())


class LocalSparkLauncher(SparkLauncher):
    """``quick_jit_below_mb``: a run known to read less than this starts Spark's JVM with the quick
    compiler only. On two cores the optimizing compiler takes about a third of a small run's CPU and
    never repays it (``dp demo``, 13 MB: 60 s instead of 75-91 s); at 71 MiB it already does
    (TPC-H SF0.1: 55 s instead of 69 s; bench/RESULTS.md). In MiB; 0, the resource's own default:
    always both compilers (the config's default, ``[spark] quick_jit_below_mb``, is what dp runs with).
    ``spark.driver.extraJavaOptions`` in ``conf`` is added to the driver options dp sets, not put
    in their place."""

    master: str = "local[*]"
    quick_jit_below_mb: int = 0
    conf: dict[str, str] = Field(default_factory=dict)
    catalog_dir: str | None = None  # a Derby metastore here backs Spark's catalog; None: no catalog
    spark_home: str | None = None  # None: this environment's pyspark (or DP_SPARK_HOME)
    python: str | None = None  # None: this interpreter (or DP_SPARK_PYTHON)

    def spark_home_path(self) -> str:
        return self.spark_home or os.environ.get(SPARK_HOME_ENV) or default_spark_home()

    def runtime(self) -> SparkRuntime:
        python = self.python or os.environ.get(SPARK_PYTHON_ENV) or sys.executable
        try:
            return local_runtime(Path(self.spark_home_path()), python)
        except UnsupportedRuntime as e:
            raise dg.Failure(str(e)) from e

    def quick_jit(self, spec: RunSpec) -> bool:
        """Whether the run's application starts with the quick compiler only (see the class)."""
        return self.quick_jit_for(input_bytes(spec))

    def quick_jit_for(self, size: int | None) -> bool:
        """Whether an application reading ``size`` bytes (None: not known) gets the quick compiler only."""
        return size is not None and size < self.quick_jit_below_mb * 2**20

    def command(self, script: str, runtime: SparkRuntime | None = None, quick_jit: bool = False) -> list[str]:
        log4j = spark_jobs_dir() / "log4j2.properties"
        java_options = f"-Dlog4j2.configurationFile=file:{log4j}" + (f" {QUICK_JIT}" if quick_jit else "")
        catalog = catalog_conf(self.catalog_dir) if self.catalog_dir else {}
        if self.catalog_dir:
            java_options += f" -Dderby.system.home={self.catalog_dir}"  # keeps derby.log out of the cwd
        user_conf = dict(self.conf)
        if extra := user_conf.pop("spark.driver.extraJavaOptions", None):  # added, not in place of dp's
            java_options += f" {extra}"
        runtime = runtime or self.runtime()
        env = job_env.for_interpreter(runtime.python)
        confs = {
            **pinned_conf(runtime, self.ansi),
            **({"spark.executorEnv.PYTHONPATH": str(env)} if env else {}),
            "spark.driver.extraJavaOptions": java_options,
            **catalog,
            **user_conf,
        }
        args = [str(Path(self.spark_home_path()) / "bin" / "spark-submit"), "--master", self.master]
        for key, value in confs.items():
            args += ["--conf", f"{key}={value}"]
        return [*args, "--py-files", str(local_spark_jobs_zip()), str(spark_jobs_dir() / script)]

    def driver_env(self, runtime: SparkRuntime | None = None) -> dict[str, str]:
        """spark-submit finds its jars and pyspark's Python modules through SPARK_HOME; the driver
        finds the job environment (when its interpreter lacks it) on PYTHONPATH."""
        env = job_env.for_interpreter((runtime or self.runtime()).python)
        return {"SPARK_HOME": self.spark_home_path(), **({"PYTHONPATH": str(env)} if env else {})}

    @contextmanager
    def warm_start(self, quick_jit: bool) -> Iterator[None]:
        """Start the run application's Spark now, while the orchestrator creates the run (seconds of
        Dagster's own work on one core), and let the run's step take it over (``run_job``). A step that
        needs another command (its run turned out to need the other JIT) stops it and starts its own;
        one the run never took over is stopped here."""
        runtime = self.runtime()
        command = self.command(RUN_SCRIPT, runtime, quick_jit)
        with tempfile.TemporaryDirectory(prefix="dp-warm-") as folder:
            context_path, messages_path = os.path.join(folder, "context"), os.path.join(folder, "messages")
            env = {
                **os.environ,
                **self.driver_env(runtime),
                # The job waits for its run while this process lives (``pipes_bootstrap.await_run``).
                DAGSTER_PIPES_CONTEXT_ENV_VAR: encode_param(
                    {"path": context_path, AWAIT_RUN_KEY: os.getpid()}
                ),
                DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_param({"path": messages_path}),
            }
            while _warm:  # one application on the catalog at a time
                stop(_warm.pop().process)
            _warm.append(WarmApplication(command, spawn(command, env), context_path, messages_path))
            try:
                yield
            finally:
                while _warm:
                    stop(_warm.pop().process)

    def run_job(
        self, context: dg.AssetExecutionContext, script: str, extras: Mapping[str, Any]
    ) -> Generator[JobEvent, None, None]:
        runtime = self.runtime()
        quick_jit = script == RUN_SCRIPT and self.quick_jit(cast(RunSpec, extras))  # a run's spec only
        compilers = "the quick JIT compiler only (a small run)" if quick_jit else "both JIT compilers"
        command = self.command(script, runtime, quick_jit)
        warm = take_warm(command) if script == RUN_SCRIPT else None
        with ExitStack() as cleanup:
            if warm is not None:  # whatever fails before it is watched, it must not outlive the step
                cleanup.callback(stop, warm.process)
            started = "; started ahead of the run" if warm else ""
            context.log.info(f"Spark runtime {runtime.describe()}; {compilers}{started}")
            with tempfile.TemporaryDirectory(prefix="dp-pipes-") as folder:
                injector: dg.PipesContextInjector = dg.PipesTempFileContextInjector()
                messages = os.path.join(folder, "messages")
                if warm is not None:  # where the application started ahead of the run waits for them
                    injector, messages = HandOverContextInjector(warm.context_path), warm.messages_path
                with dg.open_pipes_session(
                    context=context,
                    context_injector=injector,
                    message_reader=LineSafeFileMessageReader(messages),
                    extras=with_partition_range(context, extras),
                ) as session:
                    reported = Reported(session)
                    env = {**os.environ, **self.driver_env(runtime), **session.get_bootstrap_env_vars()}
                    process = warm.process if warm else spawn(command, env)
                    try:
                        while not finished(process, REPORT_SECONDS):
                            yield from reported.new()
                    finally:  # interrupted (or the run stopped reading): Spark must not outlive it
                        stop(process)
                yield from reported.new()  # what the reader received after the process ended
        if process.returncode != 0:
            raise dg.Failure(f"spark-submit exited with code {process.returncode}")


def finished(process: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to spark-submit's JVM, so Spark stops, then SIGKILL; the job's Python driver, the
    JVM's child, stops itself once the JVM is gone (``pipes_bootstrap.end_with_parent``)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    if not finished(process, STOP_SECONDS):
        process.kill()
        process.wait()
