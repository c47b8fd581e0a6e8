"""Open the Dagster Pipes session a job was started with, wherever Spark runs it.

Locally the launcher hands the context over in a temp file and reads messages from another; on EMR
both live in S3, because a step's arguments and environment are visible to anyone who can describe
the cluster. The bootstrap params say which: an S3 location names a bucket. So one job script runs
unchanged under every launcher.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
from typing import Any

from dagster_pipes import (
    PipesContext,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    PipesEnvVarParamsLoader,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)

from spark_jobs.contract import AWAIT_RUN_KEY

S3_MESSAGE_INTERVAL_SECONDS = 5.0  # how often buffered messages are uploaded while the job runs


def open_pipes() -> PipesContext:
    """The job's Pipes context: S3 loader and writer where the params name a bucket, else files."""
    params = PipesEnvVarParamsLoader()
    if not params.is_dagster_pipes_process():
        return open_dagster_pipes()  # run by hand: dagster_pipes warns and hands out a mock context
    context_on_s3 = "bucket" in params.load_context_params()
    messages_on_s3 = "bucket" in params.load_messages_params()
    s3: Any = None
    if context_on_s3 or messages_on_s3:
        import boto3  # on every EMR image; only S3 transports need it

        s3 = boto3.client("s3")
    return open_dagster_pipes(
        params_loader=params,
        context_loader=PipesS3ContextLoader(s3) if context_on_s3 else PipesDefaultContextLoader(),
        message_writer=(
            PipesS3MessageWriter(s3, interval=S3_MESSAGE_INTERVAL_SECONDS)
            if messages_on_s3
            else PipesDefaultMessageWriter()
        ),
    )


HANDOVER_POLL_SECONDS = 0.05


def awaits_run() -> bool:
    """Whether this application was started ahead of its run, to start Spark while the run is created."""
    params = PipesEnvVarParamsLoader()
    return params.is_dagster_pipes_process() and AWAIT_RUN_KEY in params.load_context_params()


class OwnerGone(SystemExit):
    pass


def await_run() -> float:
    """Seconds spent waiting for a run to take this application over: until its context file is
    written and the run's reader has created the message file (which it truncates on creation, so
    nothing may be written to it before). The process that started it (its pid is the key's value)
    may die before its run exists; the application then ends instead of waiting for nobody."""
    params = PipesEnvVarParamsLoader()
    context = params.load_context_params()
    paths, owner = [context["path"], params.load_messages_params()["path"]], int(context[AWAIT_RUN_KEY])
    started = time.monotonic()
    while not all(os.path.exists(p) for p in paths):
        if not alive(owner):
            raise OwnerGone(f"dp (pid {owner}) started this application ahead of its run and is gone")
        time.sleep(HANDOVER_POLL_SECONDS)
    return time.monotonic() - started


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the pid: ours is gone
        return False
    return True


def end_with_parent(interval_seconds: float = 1.0) -> None:
    """Stop this job once the process that started it is gone (spark-submit's JVM locally, stopped
    when its Dagster run stops; the driver's container elsewhere): KeyboardInterrupt in the main
    thread, so the job still closes its Pipes session. A job between two Spark calls would otherwise
    go on in pure Python, e.g. writing a dump's manifests, with nobody left to read what it reports."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_seconds)
        _thread.interrupt_main()

    threading.Thread(target=watch, name="dp-parent-watch", daemon=True).start()
