"""What ``dp run``, ``dp demo`` and ``dp publish`` print while their run goes: one line per table and
stage as it starts and ends, and every warning and error in full. Dagster's whole event stream
(DEBUG included) goes to a log file whose path is printed, and to the terminal too with --verbose.

A progress line is a log message that starts with ``contract.PROGRESS``, from the orchestrator or
from the Spark job through Pipes; in the UI's run log it reads as any other line.
"""

from __future__ import annotations

import logging
import sys
import time

import dagster as dg
from dagster import EventLogEntry
from dagster._core.events import RunFailureReason

from spark_jobs.contract import PROGRESS


def _meta(record: logging.LogRecord) -> dict:
    return getattr(record, "dagster_meta", None) or {}


def _message(record: logging.LogRecord) -> str:
    return _meta(record).get("orig_message") or record.getMessage()


def worth(level: int, message: str) -> bool:
    """Progress, warnings and errors; not Dagster's events and debug messages."""
    return level >= logging.WARNING or message.startswith(PROGRESS)


def worth_printing(record: logging.LogRecord) -> bool:
    return worth(record.levelno, _message(record))


def readable(created: float, level: str, message: str, error: str | None) -> str:
    """``HH:MM:SS  text``: progress without its mark; a failure with its error's message (the stack
    trace is in the log file)."""
    at = time.strftime("%H:%M:%S", time.localtime(created))
    if message.startswith(PROGRESS):
        return f"{at}  {message.removeprefix(PROGRESS)}"
    if error is not None:
        return f"{at}  {level}  {message}\n{error.rstrip()}"
    return f"{at}  {level}  {message}"


# Metadata of the Failure that ends a run's step once each failure in it has been logged as it
# happened: the terminal then shows the Failure's headline only, not every cause again.
EACH_LOGGED = "failed"


def _error(event: object) -> str | None:
    """The error text worth showing with a failure event, once: a run's failure that a step's
    caused, or a step's whose causes were each logged already, does not repeat them."""
    data = getattr(event, "event_specific_data", None)
    error = getattr(data, "error", None)
    if error is None or getattr(data, "failure_reason", None) == RunFailureReason.STEP_FAILURE:
        return None
    failure = getattr(data, "user_failure_data", None)
    if failure is not None and EACH_LOGGED in (failure.metadata or {}):
        return f"{(failure.description or '').splitlines()[0].rstrip(':')} (each above)"
    return error.message


def readable_entry(entry: EventLogEntry) -> str | None:
    """A stored event as the terminal shows it live, or None when it is not worth printing: how
    `dp backfill --wait` follows a run another process executes."""
    if not worth(entry.level, entry.user_message):
        return None
    return readable(
        entry.timestamp, logging.getLevelName(entry.level), entry.user_message, _error(entry.dagster_event)
    )


class Readable(logging.Formatter):
    """:func:`readable`, and with --verbose every event as Dagster words it."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        message, error = _message(record), _error(_meta(record).get("dagster_event"))
        if self.verbose and error is None and not message.startswith(PROGRESS):
            message = record.getMessage()
        return readable(record.created, record.levelname, message, error)


@dg.logger(
    config_schema={"log_file": dg.Field(str), "verbose": dg.Field(bool, default_value=False)},
    description="Progress, warnings and errors to the terminal; every event to a log file.",
)
def run_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    log = logging.getLogger(f"dp.run.{config['log_file']}")
    for handler in list(log.handlers):  # a second run in the same process logs afresh
        log.removeHandler(handler)
        handler.close()
    log.setLevel(logging.DEBUG)
    log.propagate = False
    to_file = logging.FileHandler(config["log_file"])
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    to_terminal = logging.StreamHandler(sys.stdout)
    to_terminal.setFormatter(Readable(config["verbose"]))
    if not config["verbose"]:
        to_terminal.addFilter(worth_printing)
    log.addHandler(to_file)
    log.addHandler(to_terminal)
    return log
