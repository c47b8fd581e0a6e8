"""The one seam that decides where Spark runs; stages call it and never branch on it."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
import zipfile
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import dagster_pipes

import spark_jobs

# Dagster's own Pipes session reads this preview property of every message reader, ours or not.
warnings.filterwarnings("ignore", "Function `PipesMessageReader.expected_writer_count`", dg.PreviewWarning)

PipesResult = dg.MaterializeResult | dg.AssetCheckResult
# What a job sends: a result, or a custom message (a dict such as ``{OUTCOME_MESSAGE: RunOutcome}``).
JobEvent = PipesResult | dict[str, Any]


class Reported:
    """What a Pipes session received since the last ``new()``, so a launcher can hand each result and
    custom message on while the application still runs (Dagster stores them as they come, not all
    after the end). Messages come first: the job sends a dump's message before its table's load
    results, and whatever result a call sees was received after the messages that preceded it."""

    def __init__(self, session: dg.PipesSession, metadata: Mapping[str, Any] | None = None) -> None:
        self._session, self._metadata = session, metadata
        self._messages = self._results = 0

    def new(self) -> list[JobEvent]:
        messages = self._session.get_custom_messages()[self._messages :]
        results = self._session.get_results(implicit_materializations=False, metadata=self._metadata)
        results = results[self._results :]
        self._messages += len(messages)
        self._results += len(results)
        return [*(m for m in messages if isinstance(m, dict)), *results]


def spark_jobs_dir() -> Path:
    """The folder of Spark job scripts shipped to wherever Spark runs."""
    return Path(next(iter(spark_jobs.__path__)))


SHIPPED_SUFFIXES = (".py", ".properties")


def spark_jobs_zip(folder: Path | None = None) -> bytes:
    """The ``spark_jobs`` package as a zip for --py-files, byte-identical for identical sources (fixed
    times); the entry point spark-submit runs imports its modules from here, on every runtime.

    It also carries ``dagster_pipes`` (pure Python, no dependencies), which no Spark runtime has: the
    jobs then need nothing installed beyond pyspark (and boto3 for Pipes on S3). Every launcher ships
    this same zip, the local one included, so a laptop runs what a cluster runs. Its ``dumping``
    package (the dump's parser and scan) needs pyarrow and numpy as well: a run that dumps ships
    them (``job_env``)."""
    folder = folder or spark_jobs_dir()
    files = [
        (f"spark_jobs/{p.relative_to(folder).as_posix()}", p)
        for p in sorted(folder.rglob("*"))
        if p.suffix in SHIPPED_SUFFIXES and "__pycache__" not in p.parts
    ]
    if not (folder / "__init__.py").exists():  # zipimport finds no namespace packages
        files.append(("spark_jobs/__init__.py", spark_jobs_dir() / "__init__.py"))
    pipes = Path(dagster_pipes.__file__).parent
    files += [
        (f"dagster_pipes/{p.name}", p) for p in sorted(pipes.iterdir()) if p.suffix in (".py", ".typed")
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def local_spark_jobs_zip() -> Path:
    """``spark_jobs_zip()`` as a file, named by its content so concurrent runs share it safely (and
    rewritten unless its bytes are exactly those: the temp folder is shared)."""
    body = spark_jobs_zip()
    path = Path(tempfile.gettempdir()) / f"dp-spark-jobs-{hashlib.sha256(body).hexdigest()[:16]}.zip"
    if not path.exists() or path.read_bytes() != body:
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(body)
        partial.replace(path)
    return path


def with_partition_range(context: dg.AssetExecutionContext, extras: Mapping[str, Any]) -> dict[str, Any]:
    """Extras plus the step's partition key range.

    Dagster 1.13 puts ``partition_key_range`` into the Pipes context only when a step targets a
    single partition, so a single-run backfill over many days would reach the job without its
    range; every launcher therefore sends it as an extra.
    """
    if not context.has_partition_key_range:
        return dict(extras)
    key_range = context.partition_key_range
    return {**extras, "partition_key_range": {"start": key_range.start, "end": key_range.end}}


class SparkLauncher(dg.ConfigurableResource):
    """Runs a script from ``spark_jobs/`` as one Spark application through Dagster Pipes, yielding
    what it reports while it runs.

    Every launcher pins its target's interpreter, UTC and ``ansi`` on each job (``pinned_conf``)."""

    ansi: bool = True  # [spark] ansi: spark.sql.ansi.enabled for every job, on every runtime

    def run_job(
        self, context: dg.AssetExecutionContext, script: str, extras: Mapping[str, Any]
    ) -> Generator[JobEvent, None, None]:
        """What the job reports, as it reports it; raises at the end when the application failed."""
        raise NotImplementedError(f"{type(self).__name__} does not run Spark jobs")
