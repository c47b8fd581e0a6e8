"""The job environment: what the dump's data plane (``spark_jobs/dumping``) imports beyond a Spark
target's own Python, which has the standard library, pyspark and boto3. That is pyarrow and numpy,
at the versions this environment runs, so a cluster parses and scans as a laptop does.

It ships as site-packages on the driver's and the Python workers' ``PYTHONPATH``. There is no
interpreter in it: the target's own runs it (EMR's ``/usr/bin/python3.11``). On EMR it is a zip in
the release (``dp deploy`` builds one for CPython 3.11 on manylinux per architecture, x86_64 and
aarch64 for Graviton), which YARN or EMR Serverless unpacks beside the driver and each executor as
``./dp_env``. Locally it is a folder built once for the interpreter the jobs run on, when that
interpreter lacks the packages (a Spark lane's stand-in for EMR's Python); this environment's own
needs none. uv builds both, from wheels only.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

JOB_PACKAGES = ("numpy", "pyarrow")
ALIAS = "dp_env"  # the folder YARN and EMR Serverless unpack it into, in the driver's and executors' cwd
EMR_PYTHON_VERSION = "3.11"  # EMR 7.1+ and emr-spark-8's /usr/bin/python3.11 (runtime.EMR7_PYTHON)
PLATFORMS = {  # Amazon Linux 2023 (glibc 2.34) on each CPU EMR runs on
    "x86_64": "x86_64-manylinux_2_28",
    "aarch64": "aarch64-manylinux_2_28",
}


SKIPPED = {"__pycache__", "include", "tests", "src"}  # headers, test suites, sources: 9 MB unused


class JobEnvError(RuntimeError):
    """The job environment could not be built; the message says what to do."""


def requirements() -> list[str]:
    """The packages pinned to this environment's versions."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in JOB_PACKAGES]


def cache_dir() -> Path:
    return Path(os.environ.get("DP_JOB_ENV_CACHE") or Path.home() / ".cache" / "dp" / "job-env")


def _install(target: Path, python_args: list[str]) -> None:
    uv = shutil.which("uv")
    if uv is None:
        raise JobEnvError(
            "uv is not on PATH: it builds the job environment (pyarrow and numpy for the Spark jobs); "
            "install uv (https://docs.astral.sh/uv/) and run again"
        )
    command = [uv, "pip", "install", "-q", "--target", str(target), "--only-binary", ":all:", "--no-deps"]
    done = subprocess.run([*command, *python_args, *requirements()], capture_output=True, text=True)
    if done.returncode != 0:
        raise JobEnvError(
            f"building the job environment ({', '.join(requirements())}; {' '.join(python_args)}) "
            f"failed:\n{done.stderr.strip()}"
        )


def _built(key: str, build: Callable[[Path], None]) -> Path:
    """``cache_dir()/key``, built once by ``build(folder)`` under a lock (runs share it)."""
    folder = cache_dir() / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".ready").exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            (folder / ".ready").touch()
    return folder


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join([*parts, *requirements()]).encode()).hexdigest()[:16]


@cache
def for_interpreter(python: str) -> Path | None:
    """Site-packages with the job packages for ``python`` on this machine; None when it imports
    them at this environment's versions already."""
    versions = f"print(' '.join(f'{{p}}=={{m.version(p)}}' for p in {JOB_PACKAGES!r}))"
    probe = f"import importlib.metadata as m; {versions}"
    have = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if have.returncode == 0 and have.stdout.split() == requirements():
        return None
    # With their bytecode, written by that interpreter: a Spark Python worker imports them on start.
    python_args = ["--python", python, "--compile-bytecode"]
    return _built(f"local-{_key(python, 'bytecode')}", lambda folder: _install(folder, python_args))


def archive_name(architecture: str) -> str:
    """The job environment's file in a release, beside spark_jobs.zip."""
    return f"job_env-{architecture}.zip"


def archive(architecture: str, python_version: str = EMR_PYTHON_VERSION) -> bytes:
    """The job environment as a zip for a cluster: CPython ``python_version`` on manylinux for
    ``architecture`` (wheels only, so nothing is compiled for this machine instead), byte-identical
    for the same versions."""
    platform, name = PLATFORMS[architecture], archive_name(architecture)

    def build(folder: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="dp-job-env-") as tmp:
            _install(Path(tmp), ["--python-version", python_version, "--python-platform", platform])
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(Path(tmp).rglob("*")):
                    if path.is_file() and not SKIPPED.intersection(path.parts):
                        member = path.relative_to(tmp).as_posix()
                        info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
                        info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
                        zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
        folder.mkdir(parents=True)
        (folder / name).write_bytes(buf.getvalue())

    return (_built(f"archive-{_key(python_version, platform, name)}", build) / name).read_bytes()
