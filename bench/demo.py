"""`dp demo` (January 2013: flights, the three PostgreSQL dimension tables and the derived
daily_carrier_delays, 31 days) against a trivial `spark-submit` (start a session, stop it) on the same
Spark, alternating, after a warm-up demo.

    uv run python -m bench.demo [--repeat 3]

Goal (#14): the demo takes at most 4x the trivial spark-submit. A run is one Spark application, so
what remains above 1x is the run's real work plus the dumps, Dagster and PostgreSQL. The demo is a
small run, so the local launcher starts its JVM with the quick JIT compiler only
(``[spark] quick_jit_below_mb``); the trivial spark-submit is timed as a user runs it, and again with
that same option, for the ratio it would give if plain Spark were started so too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import machine, median, table, timed, workdir
from dp_assets.config.loader import PACKAGED, load_config_from
from dp_assets.launchers.local import LocalSparkLauncher
from dp_assets.launchers.select import build_launcher

TRIVIAL = """
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("trivial").getOrCreate()
spark.range(1).count()
spark.stop()
"""


@dataclass(frozen=True)
class Commands:
    """The two things the benchmarks time: ``dp demo`` and a trivial spark-submit with the demo's own
    Spark settings, each an argv and its environment."""

    demo: list[str]
    demo_env: dict[str, str]
    trivial: list[str]
    trivial_env: dict[str, str]
    trivial_quick_jit: list[str]  # the same, with the JVM option the demo's small run gets


def commands(home: Path) -> Commands:
    env = {**os.environ, "DP_HOME": str(home / "dp_home")}
    loaded = load_config_from(PACKAGED, home=home / "dp_home")
    launcher = build_launcher(loaded)
    assert isinstance(launcher, LocalSparkLauncher)
    script = home / "trivial.py"
    script.write_text(TRIVIAL)
    submit, quick = (
        [*launcher.command("run_pipeline.py", quick_jit=q)[:-1], str(script)] for q in (False, True)
    )
    demo = [sys.executable, "-m", "dp_assets.cli", "demo"]
    return Commands(demo, env, submit, {**env, **launcher.driver_env()}, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run = commands(workdir("demo"))

    def demo() -> None:
        done = subprocess.run(run.demo, env=run.demo_env, capture_output=True)
        assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]

    def trivial(argv: list[str]) -> float:
        return timed(lambda: subprocess.run(argv, env=run.trivial_env, check=True, capture_output=True))[1]

    demo()  # warm-up: page cache, the PostgreSQL data folder, the Derby catalog
    demo_s, trivial_s, quick_s = [], [], []
    for n in range(args.repeat):
        trivial_s.append(trivial(run.trivial))
        demo_s.append(timed(demo)[1])
        quick_s.append(trivial(run.trivial_quick_jit))
        print(
            f"round {n + 1}: trivial spark-submit {trivial_s[-1]:.1f} s, dp demo {demo_s[-1]:.1f} s, "
            f"trivial spark-submit with the quick JIT only {quick_s[-1]:.1f} s",
            flush=True,
        )
    ratio = median(demo_s) / median(trivial_s)
    print(
        f"\n`dp demo` (January 2013, 5 tables + 1 derived) on {machine()}; "
        f"median of {args.repeat}, alternating"
    )
    print(
        table(
            ["path", "median wall s", "ratio"],
            [
                ["trivial spark-submit (session start, one count, stop)", median(trivial_s), 1.0],
                ["`dp demo`: dump + load + checks + derive, one Spark application", median(demo_s), ratio],
                [
                    "for comparison: the trivial spark-submit with the quick JIT only",
                    median(quick_s),
                    median(quick_s) / median(trivial_s),
                ],
            ],
        )
    )
    print(f"goal <= 4x: {'met' if ratio <= 4 else 'missed'} ({ratio:.2f}x)")
    against_quick = median(demo_s) / median(quick_s)
    print(f"the demo against the trivial spark-submit with the quick JIT only: {against_quick:.2f}x")


if __name__ == "__main__":
    main()
