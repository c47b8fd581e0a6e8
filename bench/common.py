"""Shared by the benchmarks: a fresh demo lake, timing, peak memory, and a plain table printer.

Benchmarks print ratios against a baseline measured in the same process, because these machines
are noisy: absolute seconds move between runs, ratios much less.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from dp_assets.config.loader import PACKAGED, LoadedConfig, load_config_from
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake

OUT = Path(__file__).resolve().parent / "out"


def workdir(name: str) -> Path:
    """A fresh folder under bench/out (git-ignored) for one benchmark's lake and instance."""
    path = OUT / name
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.mkdir(parents=True)
    return path


def demo_lake(home: Path, start: dt.date, end: dt.date) -> tuple[LoadedConfig, dict[str, int]]:
    loaded = load_config_from(PACKAGED, home=home)
    return loaded, write_flight_deliveries(Lake(loaded), start, end)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory so far: this process (Dagster) and its largest child (the Spark driver)."""
    return {
        "dagster_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "largest_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def proc_status_mb(field: str) -> float:
    """A memory figure of this process from ``/proc/self/status`` (``VmHWM``: peak RSS since the last
    reset by writing 5 to ``/proc/self/clear_refs``)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:"))) / 1024


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = platform.python_version()
    return f"{platform.node()} ({os.cpu_count()} cores, {mem:.0f} GiB, Python {python}), {dt.date.today()}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table, ready for bench/RESULTS.md."""

    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def rchar(io_file: Path) -> int:
    """Bytes read by read(2) and its kin from files and pipes (Linux ``io``); a socket's recv(2) is
    not counted, so what is measured with it keeps its data in local files."""
    text = io_file.read_text()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("rchar:")))


class OwnReads:
    """What this process's own threads read while the block runs, children not included.

    ``/proc/self/io`` is no measure of that: Linux adds a reaped child's reads to its parent's, so a
    run's spark-submit (and the Spark application under it) would count as the orchestrator's.
    ``/proc/self/task/<tid>/io`` counts one thread alone; a sampler keeps each thread's last value,
    so a thread that ends within the block is counted up to its last sample. ``whole`` is the
    process-wide figure over the same block, for comparison; ``sampler`` is what the sampler itself
    read of ``/proc``, in ``whole`` but in neither of the others.
    """

    def __init__(self, every_seconds: float = 0.02) -> None:
        self.every_seconds = every_seconds
        self.own = 0
        self.whole = 0
        self.sampler = 0
        self._sampler_tid: int | None = None  # set by the sampler thread itself

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._whole_before = rchar(Path("/proc/self/io"))
        self._before = self._threads()
        self._last = dict(self._before)
        self._sampler.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._sampler.join()
        self._last.update(self._threads())
        self.own = sum(value - self._before.get(tid, 0) for tid, value in self._last.items())
        self.whole = rchar(Path("/proc/self/io")) - self._whole_before

    def _sample_until_stopped(self) -> None:
        self._sampler_tid = threading.get_native_id()  # its own reads of /proc are not the run's
        own_io = Path(f"/proc/self/task/{self._sampler_tid}/io")
        before = rchar(own_io)
        while not self._stop.wait(self.every_seconds):
            self._last.update(self._threads())
        self.sampler = rchar(own_io) - before

    def _threads(self) -> dict[int, int]:
        values = {}
        for task in Path("/proc/self/task").iterdir():
            tid = int(task.name)
            if tid == self._sampler_tid:
                continue
            try:
                values[tid] = rchar(task / "io")
            except (OSError, StopIteration):  # the thread ended between the listing and the read
                continue
        return values
