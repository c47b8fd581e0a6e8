"""The Spark runtimes the tests run dp's jobs on, besides this environment's pyspark: one Spark per
EMR line, and the CPython versions EMR's images have.

A lane is a pyspark package (a complete Spark: bin/, jars/ and its Python modules) in a venv of its
own, installed once with uv under ``$DP_LANES_DIR`` (default ``~/.cache/dp/lanes``). Jobs never run
on the lane's venv: spark-submit puts pyspark on the path of whatever interpreter the job is given,
as on a cluster, and the jobs bring dagster_pipes in spark_jobs.zip.

    uv run python -m dp_assets_tests.runtimes 3.5   # prints DP_SPARK_HOME=… DP_SPARK_PYTHON=… (installs)
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The Spark each EMR line ships: emr-7.5.0 (the config's default release) Spark 3.5.2, emr-spark-8.0.0
# Spark 4.0.2 (AWS's EMR release guide).
LANE_PYSPARK = {"3.5": "3.5.2", "4.0": "4.0.2"}
EMR_LINES = {"emr-7.": "3.5", "emr-spark-8.": "4.0"}
# Where EMR's images keep their interpreters, and which CPython stands in for each here. Amazon
# Linux 2023's python3 is 3.9; EMR 7.1+ and emr-spark-8 add python3.11.
EMR_INTERPRETERS = {"/usr/bin/python3": "3.9", "/usr/bin/python3.11": "3.11"}
NODE_PACKAGES = "boto3"


class MissingRuntime(RuntimeError):
    pass


def lanes_dir() -> Path:
    return Path(os.environ.get("DP_LANES_DIR") or Path.home() / ".cache" / "dp" / "lanes")


def interpreter(version: str) -> str:
    """A CPython ``version`` ("3.9") on this machine: pyenv's, else ``python<version>`` on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(glob.glob(str(pyenv / "versions" / f"{version}.*" / "bin" / f"python{version}")))
    candidates = [*reversed(found), shutil.which(f"python{version}")]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version)"], capture_output=True)
        if probe.returncode == 0 and probe.stdout.decode().startswith(f"{version}."):
            return candidate
    raise MissingRuntime(f"no Python {version} on this machine (looked in {pyenv}/versions and PATH)")


def _venv(name: str, python: str, packages: list[str]) -> Path:
    """A venv under lanes_dir() holding exactly ``packages``, installed once with uv (under a lock, so
    parallel sessions share one install)."""
    venv = lanes_dir() / name
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".ready").exists():
            uv = shutil.which("uv")
            if uv is None:
                raise MissingRuntime("uv is not on PATH: it installs the Spark lanes (pip install uv)")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([uv, "venv", "-q", "-p", python, str(venv)], check=True)
            subprocess.run(
                [
                    uv,
                    "pip",
                    "install",
                    "-q",
                    "--compile-bytecode",
                    "-p",
                    str(venv / "bin" / "python"),
                    *packages,
                ],
                check=True,
            )
            (venv / ".ready").touch()
    return venv


def spark_home(line: str) -> Path:
    """The Spark of an EMR line ("3.5", "4.0"): a pyspark package in a venv of its own."""
    version = LANE_PYSPARK[line]
    venv = _venv(f"pyspark-{version}", interpreter("3.11"), [f"pyspark=={version}"])
    (home,) = glob.glob(str(venv / "lib" / "python*" / "site-packages" / "pyspark"))
    return Path(home)


def node_python(version: str) -> str:
    """The interpreter standing in for an EMR node's ``python<version>``: that CPython with what the
    image has for it and nothing else. Assumed: boto3 (the jobs' Pipes transport on S3 needs it), as
    AWS does not list per-interpreter packages; pyspark comes from spark-submit, as on a cluster."""
    return str(_venv(f"node-python{version}", interpreter(version), [NODE_PACKAGES]) / "bin" / "python")


def emr_spark_home(release_label: str) -> Path:
    """The Spark a release label ships, or MissingRuntime naming the label."""
    line = next((line for prefix, line in EMR_LINES.items() if release_label.startswith(prefix)), None)
    if line is None:
        raise MissingRuntime(f"the emulator has no Spark for release {release_label!r}")
    return spark_home(line)


if __name__ == "__main__":
    line = sys.argv[1]
    print(f"DP_SPARK_HOME={spark_home(line)} DP_SPARK_PYTHON={node_python('3.11')}")
