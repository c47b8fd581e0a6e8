"""The Spark runtime a launcher's target provides, and the settings dp pins on every job.

A job must give the same answer on a laptop and on every EMR release, so nothing is left to a
target's defaults: each launcher knows its target's runtime (Spark line, Scala, the interpreter the
jobs run on) and passes the interpreter, the session time zone and ANSI mode explicitly. A release
whose runtime dp cannot run is refused by name before anything is started.

What EMR ships (AWS's EMR release guide, application versions per release):

- emr-7.0.0: Spark 3.5.0, Scala 2.12, Python 3.9 only. dp's jobs need Python 3.10 or later (the
  ``dagster_pipes`` they carry does), so 7.0.0 is refused.
- emr-7.1.0 .. emr-7.x: Spark 3.5.x, Scala 2.12, Python 3.9 (``python3``) and 3.11: the jobs run on
  ``/usr/bin/python3.11``. ANSI mode is off by default (Spark 3.5).
- emr-spark-8.x: Spark 4.0.x, Scala 2.13, Python 3.11, 3.12 and 3.13; ANSI mode on by default.
- EMR Serverless: the same Spark per release label, but AWS documents only Python 3.9 for 7.x images
  (its samples install 3.11 into a custom image), so 7.x there needs ``[spark.emr] python`` naming the
  interpreter of a custom image.

A run that dumps also depends on the target's CPU: the job environment dp ships with it (``job_env``)
holds compiled packages, one archive per architecture. EC2 instance types name Graviton (aarch64)
with a ``g`` among the attributes after the generation (m7g, c6gn, r6gd, im4gn); an EMR Serverless
application says ``X86_64`` or ``ARM64``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

EMR7_PYTHON = "/usr/bin/python3.11"
MIN_PYTHON = (3, 10)  # dagster_pipes 1.13, shipped in spark_jobs.zip, requires it


class UnsupportedRuntime(ValueError):
    """A target whose Spark or Python dp's jobs cannot run on; the message says what to use."""


@dataclass(frozen=True)
class SparkRuntime:
    """What a target runs the jobs on."""

    label: str  # "emr-7.5.0", or "local" for this machine's Spark
    spark: str  # the Spark line, "3.5" or "4.0"
    scala: str  # "2.12" or "2.13"
    python: str  # the interpreter the driver and the Python workers run on, on the target
    ansi_default: bool  # the target's own spark.sql.ansi.enabled, which dp overrides

    def describe(self) -> str:
        return f"{self.label}: Spark {self.spark} (Scala {self.scala}), Python {self.python}"


_INSTANCE_TYPE = re.compile(r"([a-z]+)(\d+)([a-z-]*)\.[a-z0-9]+")


def instance_architecture(instance_type: str) -> str:
    """The CPU of an instance type EMR runs on: aarch64 for Graviton (a ``g`` among the attributes
    after the generation: m7g, c6gn, r6gd, x2gd, im4gn; and the first Graviton, a1), else x86_64
    (m5, m6i, m7a, g5, g4dn)."""
    match = _INSTANCE_TYPE.fullmatch(instance_type)
    if not match:
        raise UnsupportedRuntime(
            f"instance type {instance_type!r} is not one dp can read the CPU of; use an EC2 instance type "
            "like m7g.xlarge (Graviton) or m6i.xlarge"
        )
    family, generation, attributes = match.groups()
    return "aarch64" if "g" in attributes or (family, generation) == ("a", "1") else "x86_64"


def one_architecture(where: str, instance_types: list[str]) -> str:
    """The one CPU architecture of the nodes that run a job's containers; a mix is refused, because
    the job environment shipped to them is built for one."""
    found = {t: instance_architecture(t) for t in instance_types}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{t} ({a})" for t, a in sorted(found.items()))
        raise UnsupportedRuntime(
            f"{where} runs containers on x86_64 and aarch64 nodes ({listed}); dp ships the job "
            "environment built for one architecture per job: use one (Graviton or not) for the core "
            "and task nodes"
        )
    return next(iter(found.values()), "x86_64")


def sql_conf(ansi: bool) -> dict[str, str]:
    """How SQL behaves, pinned for every job and for `dp validate`'s planning: UTC as the session
    time zone (timestamp parsing and ``row_hash`` must not depend on the host's zone), and one ANSI
    mode (``[spark] ansi``), so SQL errors or returns nulls the same way on every release."""
    return {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "true" if ansi else "false"}


def pinned_conf(runtime: SparkRuntime, ansi: bool) -> dict[str, str]:
    """Spark settings every job gets, whatever the target's defaults: its interpreter and
    ``sql_conf``."""
    return {
        "spark.pyspark.python": runtime.python,
        "spark.pyspark.driver.python": runtime.python,
        **sql_conf(ansi),
    }


_EMR7 = re.compile(r"emr-7\.(\d+)\.\d+")
_EMR8 = re.compile(r"emr-spark-8\.\d+\.\d+")
SUPPORTED_RELEASES = "emr-7.1.0 and later 7.x, and emr-spark-8.x"


def emr_runtime(release_label: str, *, serverless: bool = False, python: str | None = None) -> SparkRuntime:
    """The runtime of an EMR release, on EC2 or Serverless; ``python`` overrides the interpreter
    (a custom image or a shipped environment). UnsupportedRuntime names what dp cannot run."""
    where = f"EMR Serverless {release_label}" if serverless else release_label
    if _EMR8.fullmatch(release_label):
        return SparkRuntime(release_label, "4.0", "2.13", python or EMR7_PYTHON, ansi_default=True)
    emr7 = _EMR7.fullmatch(release_label)
    if not emr7:
        raise UnsupportedRuntime(
            f"{where} is not a release dp runs on; dp supports {SUPPORTED_RELEASES} "
            "(Spark 3.5 and 4.0 with Python 3.11)"
        )
    if python:
        return SparkRuntime(release_label, "3.5", "2.12", python, ansi_default=False)
    if int(emr7.group(1)) == 0:
        raise UnsupportedRuntime(
            f"{where} ships Python 3.9 only, and dp's jobs need Python 3.10 or later; use emr-7.1.0 or "
            "later (Python 3.11), or set [spark.emr] python to an interpreter your image provides"
        )
    if serverless:
        raise UnsupportedRuntime(
            f"{where}: AWS documents only Python 3.9 for EMR Serverless 7.x images, and dp's jobs need "
            "3.10 or later; use a custom image with python3.11 and set [spark.emr] python = "
            f'"{EMR7_PYTHON}", or an emr-spark-8 release'
        )
    return SparkRuntime(release_label, "3.5", "2.12", EMR7_PYTHON, ansi_default=False)


def local_runtime(spark_home: Path, python: str) -> SparkRuntime:
    """This machine's Spark, read off the spark-core jar of ``spark_home`` (e.g. a pyspark package),
    and the interpreter ``python``, checked to be one the jobs can run on."""
    jars = sorted((spark_home / "jars").glob("spark-core_*.jar"))
    found = re.fullmatch(r"spark-core_(\d+\.\d+)-(\d+\.\d+)\.\d+.*\.jar", jars[0].name) if jars else None
    if not found:
        raise UnsupportedRuntime(f"{spark_home} holds no Spark (no jars/spark-core_*.jar)")
    scala, spark = found.groups()
    if tuple(map(int, spark.split("."))) < (3, 5):
        raise UnsupportedRuntime(f"{spark_home} holds Spark {spark}; dp's jobs need Spark 3.5 or later")
    probe = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True)
    version = tuple(map(int, probe.stdout.split())) if probe.returncode == 0 else ()
    if version < MIN_PYTHON:
        found = ".".join(map(str, version)) if version else "not runnable"
        raise UnsupportedRuntime(
            f"{python} is Python {found}; dp's jobs need Python 3.10 or later (set DP_SPARK_PYTHON)"
        )
    return SparkRuntime("local", spark, scala, python, ansi_default=not spark.startswith("3."))
