"""Run notifications: SNS topics per environment, an optional Slack webhook, and a dead-man switch.

Prod sends successes to an info topic and failures to a paging topic; other environments send both
to one combined topic. The dead-man switch (healthchecks.io convention: ``<url>/start``, ``<url>``,
``<url>/fail``) is pinged at run start, success and failure, so an external monitor alarms when the
pings stop: silence itself is an alert. Webhook and dead-man URLs are secrets: the config names the
environment variables, the resource reads them through ``dg.EnvVar``, and no message, log line or
error ever contains them.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from enum import Enum

import dagster as dg

from dp_assets.automation.runs import PARTITION, RANGE_END, RANGE_START, TABLE_TAG
from dp_assets.config.loader import LoadedConfig

HTTP_TIMEOUT_SECONDS = 10


class Outcome(Enum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "FAILED"


class NotificationError(Exception):
    """A notification target refused or could not be reached; the message names it, never its URL."""


class Notifier(dg.ConfigurableResource):
    """Where run notifications go, for one pipeline in one environment."""

    pipeline_name: str
    env: str
    dagster_url: str
    sns_topic_arn: str | None = None
    sns_info_topic_arn: str | None = None
    sns_paging_topic_arn: str | None = None
    slack_webhook_env: str | None = None  # the variable's name, for messages about it
    slack_webhook_url: str | None = None  # its value, given as dg.EnvVar(slack_webhook_env)
    deadman_url_env: str | None = None
    deadman_url: str | None = None

    @classmethod
    def for_loaded(cls, loaded: LoadedConfig) -> Notifier:
        n, g = loaded.config.notify, loaded.config.general
        return cls(
            pipeline_name=g.pipeline_name,
            env=g.env,
            dagster_url=n.dagster_url.rstrip("/"),
            sns_topic_arn=n.sns_topic_arn,
            sns_info_topic_arn=n.sns_info_topic_arn,
            sns_paging_topic_arn=n.sns_paging_topic_arn,
            slack_webhook_env=n.slack_webhook_env,
            slack_webhook_url=dg.EnvVar(n.slack_webhook_env) if n.slack_webhook_env else None,
            deadman_url_env=n.deadman_url_env,
            deadman_url=dg.EnvVar(n.deadman_url_env) if n.deadman_url_env else None,
        )

    def topic_for(self, outcome: Outcome) -> str | None:
        if outcome is Outcome.STARTED:
            return None
        if self.sns_topic_arn:
            return self.sns_topic_arn
        return self.sns_paging_topic_arn if outcome is Outcome.FAILED else self.sns_info_topic_arn

    def run_link(self, run_id: str) -> str:
        return f"{self.dagster_url}/runs/{run_id}"

    def message(
        self, outcome: Outcome, run: dg.DagsterRun, failed_steps: Sequence[tuple[str, str]] = ()
    ) -> tuple[str, str]:
        """Subject and body naming the pipeline, env, partitions, what failed and the run's link."""
        tags = run.tags
        if RANGE_START in tags:
            start, end = tags[RANGE_START], tags.get(RANGE_END, tags[RANGE_START])
            partitions = start if start == end else f"{start}..{end}"
        else:
            partitions = tags.get(PARTITION, "none")
        what = tags.get(TABLE_TAG, run.job_name)
        subject = f"[dp {self.env}] {self.pipeline_name} {what} {partitions}: {outcome.value}"
        lines = [
            f"pipeline:   {self.pipeline_name}",
            f"env:        {self.env}",
            f"status:     {outcome.value}",
            f"job:        {run.job_name}" + (f" (table {tags[TABLE_TAG]})" if TABLE_TAG in tags else ""),
            f"partitions: {partitions}",
        ]
        lines += [f"failed {what}: {error}" for what, error in failed_steps]
        lines.append(f"run:        {self.run_link(run.run_id)}")
        return subject[:100], "\n".join(lines)  # SNS subjects are at most 100 characters

    def deliver(
        self,
        outcome: Outcome,
        run: dg.DagsterRun,
        log: logging.Logger | None,
        failed_steps: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send to every configured target; raise once, naming each target that failed."""
        subject, body = self.message(outcome, run, failed_steps)
        errors: list[str] = []
        sent: list[str] = []
        if topic := self.topic_for(outcome):
            try:
                import boto3

                boto3.client("sns", region_name=topic.split(":")[3]).publish(
                    TopicArn=topic, Subject=subject, Message=body
                )
                sent.append(f"SNS {topic}")
            except Exception as e:  # boto3/botocore errors name the topic and the reason, never a secret
                errors.append(f"SNS topic {topic}: {type(e).__name__}: {e}")
        if self.slack_webhook_url and outcome is not Outcome.STARTED:
            what = f"Slack webhook ${self.slack_webhook_env}"
            payload = json.dumps({"text": f"*{subject}*\n```{body}```"}).encode()
            _post(self.slack_webhook_url, payload, "application/json", what, errors, sent)
        if self.deadman_url:
            suffix = {Outcome.STARTED: "/start", Outcome.SUCCEEDED: "", Outcome.FAILED: "/fail"}[outcome]
            what = f"dead-man switch ${self.deadman_url_env}{suffix}"
            _post(self.deadman_url.rstrip("/") + suffix, body.encode(), "text/plain", what, errors, sent)
        if log is not None and sent:
            log.info(f"run {run.run_id} {outcome.value}: notified {', '.join(sent)}")
        if errors:
            raise NotificationError(f"run {run.run_id} {outcome.value}: " + "; ".join(errors))


def _post(url: str, body: bytes, content_type: str, what: str, errors: list[str], sent: list[str]) -> None:
    """POST and record the outcome under ``what``; the URL never enters a message or a traceback."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    problem = None
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as e:
        problem = f"HTTP {e.code} {e.reason}"
    except (urllib.error.URLError, OSError) as e:
        problem = type(getattr(e, "reason", e)).__name__
    if problem:
        errors.append(f"{what}: {problem}; check the endpoint and the variable's value")
    else:
        sent.append(what)


def step_failures(context: dg.RunFailureSensorContext) -> list[tuple[str, str]]:
    """(what, first line of its error): each asset the run's step names as failed or not run, else
    each failed step, else the run's own failure message."""
    out = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        named = data.user_failure_data.metadata if data.user_failure_data else {}
        if "failed" in named or "not_run" in named:
            for asset, cause in (named["failed"].value if "failed" in named else {}).items():
                out.append((asset, cause.strip().splitlines()[0]))
            for asset, why in (named["not_run"].value if "not_run" in named else {}).items():
                out.append((asset, f"not run: {why}"))
            continue
        error = data.error
        message = error.message.strip().splitlines()[0] if error else event.message or "failed"
        out.append((f"step {event.step_key or '?'}", message))
    return out or [("(run)", (context.failure_event.message or "failed").strip().splitlines()[0])]


def build_notification_sensors(loaded: LoadedConfig) -> list[dg.SensorDefinition]:
    """Run-status sensors for the configured targets; none when ``[notify]`` names no target."""
    n = loaded.config.notify
    if not n.enabled:
        return []
    running = dg.DefaultSensorStatus.RUNNING

    @dg.run_status_sensor(
        name="notify_run_succeeded",
        run_status=dg.DagsterRunStatus.SUCCESS,
        default_status=running,
        description="Success messages to SNS (prod: info topic), Slack, and the dead-man switch.",
    )
    def succeeded(context: dg.RunStatusSensorContext, notifier: Notifier) -> None:
        notifier.deliver(Outcome.SUCCEEDED, context.dagster_run, context.log)

    @dg.run_failure_sensor(
        name="notify_run_failed",
        default_status=running,
        description="Failure messages to SNS (prod: paging topic), Slack, and the dead-man switch /fail.",
    )
    def failed(context: dg.RunFailureSensorContext, notifier: Notifier) -> None:
        notifier.deliver(Outcome.FAILED, context.dagster_run, context.log, step_failures(context))

    sensors: list[dg.SensorDefinition] = [succeeded, failed]
    if n.deadman_url_env:

        @dg.run_status_sensor(
            name="notify_run_started",
            run_status=dg.DagsterRunStatus.STARTED,
            default_status=running,
            description="Pings the dead-man switch's /start when a run starts.",
        )
        def started(context: dg.RunStatusSensorContext, notifier: Notifier) -> None:
            notifier.deliver(Outcome.STARTED, context.dagster_run, context.log)

        sensors.append(started)
    return sensors
