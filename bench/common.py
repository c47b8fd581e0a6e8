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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
