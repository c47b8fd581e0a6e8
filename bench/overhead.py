"""Orchestration overhead: one partition through Dagster (dump + load + checks, one run) against a
bare `spark-submit` of the same load job on the same staged data, alternating.

    uv run python -m bench.overhead [--repeat 3]

The bare run gets the very extras the run would send for the table (`load_request`) through a hand-made Pipes
context, so both do the same Spark work (typing, publish, catalog, checks). Goal: <= 1.3x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
from dagster_pipes import encode_param

from bench.common import demo_lake, machine, median, peak_rss_mb, table, timed, workdir
from dp_assets.definitions import build_definitions
from dp_assets.launchers.local import LocalSparkLauncher
from dp_assets.runner import run_range
from dp_assets.stages.load import load_request
from spark_jobs.contract import RUN_SCRIPT, RunSpec

DAY = dt.date(2013, 1, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    home = workdir("overhead")
    loaded, delivered = demo_lake(home, DAY, DAY)
    instance = dg.DagsterInstance.ephemeral()
    launcher = build_definitions(loaded).resources["spark"]
    assert isinstance(launcher, LocalSparkLauncher)
    day = DAY.isoformat()

    def through_dagster() -> None:
        assert run_range(loaded, DAY, DAY, instance, ["flights"]).ok

    def bare(n: int) -> None:
        extras: RunSpec = {
            "partition_key_range": {"start": day, "end": day},
            "dumps": [],
            "loads": [load_request(loaded, "flights")],
            "derives": [],
            "secondary": None,
            "s3_credentials": {},
            "keep_superseded_seconds": 0,
        }
        context = {
            "asset_keys": ["flights"],
            "code_version_by_asset_key": None,
            "provenance_by_asset_key": None,
            "partition_key": day,
            "partition_key_range": {"start": day, "end": day},
            "partition_time_window": None,
            "run_id": f"bare-{n}",
            "job_name": None,
            "retry_number": 0,
            "extras": extras,
        }
        messages = home / f"bare-{n}.messages"
        env = {
            **os.environ,
            **launcher.driver_env(),
            "DAGSTER_PIPES_CONTEXT": encode_param({"data": context}),
            "DAGSTER_PIPES_MESSAGES": encode_param({"path": str(messages)}),
        }
        # The JVM the run's application gets for the day's delivery.
        delivery = Path(loaded.input_path) / "flights" / day
        quick_jit = launcher.quick_jit_for(sum(f.stat().st_size for f in delivery.iterdir()))
        subprocess.run(
            launcher.command(RUN_SCRIPT, quick_jit=quick_jit), env=env, check=True, capture_output=True
        )
        assert '"method": "report_asset_check"' in messages.read_text()

    through_dagster()  # warm-up, and stages the day for the bare runs
    dagster_s, bare_s = [], []
    for n in range(args.repeat):
        bare_s.append(timed(lambda n=n: bare(n))[1])
        dagster_s.append(timed(through_dagster)[1])
        print(f"round {n + 1}: bare {bare_s[-1]:.1f} s, dagster {dagster_s[-1]:.1f} s", flush=True)

    ratio = median(dagster_s) / median(bare_s)
    print(
        f"\nOrchestration overhead on {machine()}; one day ({delivered[day]} rows); median of {args.repeat}, "
        "alternating"
    )
    print(
        table(
            ["path", "median wall s", "ratio"],
            [
                ["bare spark-submit of the run job (one load)", median(bare_s), 1.0],
                ["Dagster run: dump + load + checks", median(dagster_s), ratio],
            ],
        )
    )
    print(f"goal <= 1.3x: {'met' if ratio <= 1.3 else 'missed'} ({ratio:.2f}x)")
    print(f"peak memory: {peak_rss_mb()}")


if __name__ == "__main__":
    main()
