"""Sensor tick at scale: 100,000 keys already under the landing prefix, then rounds of 10 new keys
(one new day each), one tick per round against a moto S3 server over HTTP. Reports the median tick
time, S3 requests per tick, and a full listing of the prefix as the baseline a naive sensor pays.

    uv run python -m bench.sensor_tick [--rounds 5]

Goal: <= 2 s a tick and O(new keys) requests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import time
from collections import Counter

import boto3
import dagster as dg
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

from bench.common import machine, median, peak_rss_mb, table, workdir
from dp_assets.config.loader import load_config_from
from dp_assets.definitions import build_definitions
from dp_assets.lake import Lake
from dp_assets_tests.conftest import PACKAGED_CONFIG

DAYS, FILES_PER_DAY, NEW_PER_ROUND = 1000, 100, 10
BUCKET = "landing-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
    )
    boto3.setup_default_session()
    calls: Counter[str] = Counter()
    boto3.DEFAULT_SESSION.events.register("before-call.s3", lambda model, **kw: calls.update([model.name]))
    boto3.client("s3").create_bucket(Bucket=BUCKET)

    home = workdir("sensor_tick")
    text = PACKAGED_CONFIG.read_text()
    text = re.sub(r"(?m)^input_path = .*$", f'input_path = "s3://{BUCKET}/landing"', text)
    text = re.sub(r"(?m)^start_date = .*$", "start_date = 2020-01-01", text)
    text = re.sub(r"(?m)^end_date = .*$", "end_date = 2023-12-31", text)
    (home / "config.toml").write_text(text)
    loaded = load_config_from(str(home / "config.toml"), home=home)
    sensor = build_definitions(loaded).resolve_sensor_def("new_data_flights")
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(DAYS + args.rounds)]

    def tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
        data = sensor.evaluate_tick(
            dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor)
        )
        return list(data.run_requests or []), data.cursor

    # Setup straight into moto's in-process backend (fast); every tick goes over HTTP. The sensor has
    # been running: it saw the newest days as they came, and S3 lists in key order whenever keys
    # were written, so the older history can be added behind its cursor.
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    began = time.monotonic()

    def put_days(chosen: list[dt.date]) -> None:
        for day in chosen:
            for j in range(FILES_PER_DAY):
                backend.put_object(BUCKET, f"landing/flights/{day}/part-{j:05d}.csv", b"x")

    put_days(days[DAYS - 4 : DAYS])
    _, cursor = tick(None)
    put_days(days[: DAYS - 4])
    print(f"created {DAYS * FILES_PER_DAY:,} keys in {time.monotonic() - began:.1f} s", flush=True)

    calls.clear()
    began = time.monotonic()
    assert len(Lake(loaded).landing.list("flights")) == DAYS * FILES_PER_DAY
    full_listing = (time.monotonic() - began, calls["ListObjectsV2"])

    rows, seconds = [], []
    for r, day in enumerate(days[DAYS:]):
        for j in range(NEW_PER_ROUND):
            boto3.client("s3").put_object(Bucket=BUCKET, Key=f"landing/flights/{day}/new-{j}.csv", Body=b"x")
        calls.clear()
        began = time.monotonic()
        requests, cursor = tick(cursor)
        elapsed = time.monotonic() - began
        assert [(q.tags["dagster/asset_partition_range_start"]) for q in requests] == [str(day)], requests
        seconds.append(elapsed)
        rows.append([r + 1, NEW_PER_ROUND, elapsed, calls["ListObjectsV2"], sum(calls.values())])
        print(f"round {r + 1}: {elapsed:.2f} s, {dict(calls)}", flush=True)

    print(f"\nSensor tick on {machine()}; {DAYS * FILES_PER_DAY:,} existing keys, moto server over HTTP")
    print(table(["round", "new keys", "tick s", "ListObjectsV2", "all S3 requests"], rows))
    verdict = "met" if median(seconds) <= 2 else "missed"
    print(
        f"\nmedian tick {median(seconds):.2f} s (goal <= 2 s: {verdict}); a full listing of the prefix "
        f"for comparison: {full_listing[0]:.1f} s, {full_listing[1]} ListObjectsV2 requests"
    )
    print(f"peak memory: {peak_rss_mb()}")
    server.stop()


if __name__ == "__main__":
    main()
