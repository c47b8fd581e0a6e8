"""Run notifications, driven by real runs: SNS topics on a moto server (read back through SQS), and
Slack and the dead-man switch on a local HTTP server. Secrets never reach a message or a log."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import dagster as dg
import pytest

from dp_assets.automation.notify import NotificationError
from dp_assets.automation.runs import TABLE_TAG
from dp_assets.config.loader import LoadedConfig
from dp_assets.definitions import PIPELINE_JOB, build_definitions
from dp_assets.lake import Lake
from dp_assets_tests.automation_support import config_with
from dp_assets_tests.helpers import range_tags

SLACK_SECRET = "T0001/B0001/slack-secret-token"
DEADMAN_SECRET = "0f8e-deadman-secret-uuid"


@dataclass
class Endpoint:
    """A local HTTP server that records every request and answers with ``status``."""

    base: str
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append((self.path, body))
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    """A port nobody listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def topic_with_queue(name: str) -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed to it: (topic ARN, queue URL)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue


def received(queue: str) -> list[dict[str, str]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def notify_config(
    home: Path, env: str, topics: str, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> LoadedConfig:
    monkeypatch.setenv("DP_SLACK_WEBHOOK_URL", f"{endpoint.base}/slack/{SLACK_SECRET}")
    monkeypatch.setenv("DP_DEADMAN_URL", f"{endpoint.base}/ping/{DEADMAN_SECRET}")
    return config_with(
        home,
        {"env": f'"{env}"'},
        f'[notify]\ndagster_url = "https://dagster.example.com/"\n{topics}'
        'slack_webhook_env = "DP_SLACK_WEBHOOK_URL"\ndeadman_url_env = "DP_DEADMAN_URL"\n',
    )


def run_dump(
    loaded: LoadedConfig, instance: dg.DagsterInstance, start: str, end: str, delivered: bool
) -> dg.DagsterRun:
    """A real run of the dump step (no Spark): it fails when nothing was delivered."""
    if delivered:
        for day in (start, end):
            with Lake(loaded).landing.open_write(f"flights/{day}/flights_{day}.csv") as f:
                f.write(b"year,month,day\n2013,1,5\n")
    job = build_definitions(loaded).resolve_job_def(PIPELINE_JOB)
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(["raw", "flights"])],
        tags={**range_tags(start, end), TABLE_TAG: "flights"},
        raise_on_error=False,
    )
    assert result.success is delivered
    return result.dagster_run


def evaluate(loaded: LoadedConfig, name: str, instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Evaluate a run-status sensor of the definitions on the run's own event, as the daemon does."""
    defs = build_definitions(loaded)
    event_type = {
        "notify_run_started": dg.DagsterEventType.RUN_START,
        "notify_run_succeeded": dg.DagsterEventType.RUN_SUCCESS,
        "notify_run_failed": dg.DagsterEventType.RUN_FAILURE,
    }[name]
    record = instance.get_records_for_run(run.run_id, of_type=event_type).records[0]
    context = dg.build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"notifier": defs.resources["notifier"]},
    )
    sensor = defs.resolve_sensor_def(name)
    sensor(context.for_run_failure() if name == "notify_run_failed" else context)


def test_non_prod_failure_goes_to_the_combined_topic_slack_and_the_dead_man_switch(
    aws: str,
    isolated_home: Path,
    endpoint: Endpoint,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic, queue = topic_with_queue("dp-dev-alerts")
    loaded = notify_config(isolated_home, "dev", f'sns_topic_arn = "{topic}"\n', endpoint, monkeypatch)
    with dg.instance_for_test() as instance:
        run = run_dump(loaded, instance, "2013-01-05", "2013-01-06", delivered=False)
        evaluate(loaded, "notify_run_started", instance, run)
        evaluate(loaded, "notify_run_failed", instance, run)

    (message,) = received(queue)  # the start is a dead-man ping only, not a message
    assert message["Subject"] == "[dp dev] nycflights13 flights 2013-01-05..2013-01-06: FAILED"
    body = message["Message"]
    for expected in (
        "pipeline:   nycflights13",
        "env:        dev",
        "partitions: 2013-01-05..2013-01-06",
        "failed raw/flights: MissingDelivery: no delivery for table 'flights', "
        "partition 2013-01-05: nothing under",
        f"run:        https://dagster.example.com/runs/{run.run_id}",
    ):
        assert expected in body
    paths = [path for path, _ in endpoint.requests]
    assert paths == [
        f"/ping/{DEADMAN_SECRET}/start",
        f"/slack/{SLACK_SECRET}",
        f"/ping/{DEADMAN_SECRET}/fail",
    ]
    slack = json.loads(endpoint.requests[1][1])["text"]
    assert "FAILED" in slack and f"/runs/{run.run_id}" in slack

    logs = capsys.readouterr()
    assert "notified SNS" in logs.err and "$DP_SLACK_WEBHOOK_URL" in logs.err
    for secret in (SLACK_SECRET, DEADMAN_SECRET):
        assert secret not in logs.out + logs.err and secret not in body and secret not in slack


def test_prod_sends_successes_to_info_and_failures_to_paging(
    aws: str, isolated_home: Path, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    info, info_queue = topic_with_queue("dp-prod-info")
    paging, paging_queue = topic_with_queue("dp-prod-paging")
    topics = f'sns_info_topic_arn = "{info}"\nsns_paging_topic_arn = "{paging}"\n'
    loaded = notify_config(isolated_home, "prod", topics, endpoint, monkeypatch)
    with dg.instance_for_test() as instance:
        good = run_dump(loaded, instance, "2013-01-07", "2013-01-07", delivered=True)
        evaluate(loaded, "notify_run_succeeded", instance, good)
        (success,) = received(info_queue)
        assert received(paging_queue) == []
        assert success["Subject"] == "[dp prod] nycflights13 flights 2013-01-07: succeeded"
        assert f"/runs/{good.run_id}" in success["Message"]

        bad = run_dump(loaded, instance, "2013-02-01", "2013-02-01", delivered=False)
        evaluate(loaded, "notify_run_failed", instance, bad)
        (failure,) = received(paging_queue)
        assert received(info_queue) == []
        assert "failed raw/flights" in failure["Message"] and "env:        prod" in failure["Message"]
    assert [p for p, _ in endpoint.requests if p.startswith("/ping")] == [
        f"/ping/{DEADMAN_SECRET}",
        f"/ping/{DEADMAN_SECRET}/fail",
    ]


def test_a_failing_target_fails_the_tick_naming_the_variable_never_the_url(
    aws: str, isolated_home: Path, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, queue = topic_with_queue("dp-dev-flaky")
    loaded = notify_config(isolated_home, "dev", f'sns_topic_arn = "{topic}"\n', endpoint, monkeypatch)
    endpoint.status = 500  # Slack is down, and nothing listens at the dead-man URL
    monkeypatch.setenv("DP_DEADMAN_URL", f"http://127.0.0.1:{closed_port()}/ping/{DEADMAN_SECRET}")
    with dg.instance_for_test() as instance:
        run = run_dump(loaded, instance, "2013-01-05", "2013-01-05", delivered=False)
        with pytest.raises(Exception) as raised:
            evaluate(loaded, "notify_run_failed", instance, run)
    error = raised.value
    while not isinstance(error, NotificationError) and error.__cause__ is not None:
        error = error.__cause__  # Dagster wraps errors raised in a sensor
    assert isinstance(error, NotificationError)
    text = str(error)
    assert "Slack webhook $DP_SLACK_WEBHOOK_URL: HTTP 500" in text
    assert "dead-man switch $DP_DEADMAN_URL/fail: ConnectionRefusedError" in text
    assert SLACK_SECRET not in text and DEADMAN_SECRET not in text and "127.0.0.1" not in text
    assert len(received(queue)) == 1  # the other targets were still notified


def test_secrets_stay_env_vars_and_no_targets_means_no_notification_sensors(
    isolated_home: Path, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = build_definitions(config_with(isolated_home))
    assert not [s for s in plain.sensors or [] if s.name.startswith("notify_")]
    assert "notifier" not in (plain.resources or {})

    defs = build_definitions(notify_config(isolated_home, "dev", "", endpoint, monkeypatch))
    notifier = defs.resources["notifier"]
    assert isinstance(notifier.slack_webhook_url, dg.EnvVar) and notifier.slack_webhook_url.env_var_name == (
        "DP_SLACK_WEBHOOK_URL"
    )
    names = {s.name for s in defs.sensors or []}
    assert {"notify_run_started", "notify_run_succeeded", "notify_run_failed"} <= names
