"""Catch-up scaling: the demo pipeline over 1, 7, 31 and 365 days, each as ONE run (one Spark
application), against the 1-day run; and the naive alternative, one run per day, for 7 days.

    uv run python -m bench.catchup [--repeat 2]

Goal: 365 days <= 3x the wall time of 1 day.
"""

from __future__ import annotations

import argparse
import datetime as dt

import dagster as dg

from bench.common import demo_lake, machine, median, peak_rss_mb, table, timed, workdir
from dp_assets.runner import run_range

START = dt.date(2013, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2, help="runs per range (median reported)")
    args = parser.parse_args()

    home = workdir("catchup")
    loaded, _ = demo_lake(home, START, dt.date(2013, 12, 31))
    instance = dg.DagsterInstance.ephemeral()

    def run(first: dt.date, last: dt.date) -> int:
        summary = run_range(loaded, first, last, instance, ["flights"])
        assert summary.ok, summary.render()
        return summary.tables["flights"].rows

    run(START, START)  # warm-up: JVM and page cache
    rows_by_days: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for days in (1, 7, 31, 365):
        end = START + dt.timedelta(days=days - 1)
        walls = []
        for _ in range(args.repeat):
            rows_by_days[days], wall = timed(lambda e=end: run(START, e))
            walls.append(wall)
        seconds[days] = median(walls)
        print(f"{days:>3} day(s): {rows_by_days[days]:>7} rows, median {seconds[days]:.1f} s", flush=True)

    _, naive = timed(
        lambda: [run(START + dt.timedelta(days=i), START + dt.timedelta(days=i)) for i in range(7)]
    )
    print(f"naive 7 x 1-day runs: {naive:.1f} s", flush=True)

    base = seconds[1]
    rows = [[d, rows_by_days[d], seconds[d], seconds[d] / base] for d in seconds]
    rows.append(["7, one run per day (naive)", rows_by_days[7], naive, naive / base])
    print(f"\nCatch-up scaling on {machine()}; median of {args.repeat}; ratio = wall / 1-day wall")
    print(table(["days", "rows", "wall s", "ratio vs 1 day"], rows))
    print(f"\nnaive 7 runs / one 7-day run: {naive / seconds[7]:.2f}x")
    print(
        f"goal 365 days <= 3x 1 day: {'met' if seconds[365] <= 3 * base else 'missed'} "
        f"({seconds[365] / base:.2f}x)"
    )
    print(f"peak memory: {peak_rss_mb()}")


if __name__ == "__main__":
    main()
