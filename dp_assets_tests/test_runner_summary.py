"""The run summary tells the truth: a failed step says FAILED with its error, a table that never ran
says why, and `all passed` needs checks that ran and passed. No Spark: the steps that fail here fail
before any Spark job, and the launcher refuses to start one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from dp_assets.config.loader import PACKAGED, load_config_from
from dp_assets.launchers.local import LocalSparkLauncher
from dp_assets.runner import ERROR_WIDTH, RunSummary, TableSummary, error_line, run_range, summarize
from dp_assets.stages.tables import RunFailures
from dp_assets_tests.helpers import range_tags

DAYS = ("2013-01-01", "2013-01-02")
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2013-01-01")


@pytest.fixture(autouse=True)
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("these tests must not start Spark")

    monkeypatch.setattr(LocalSparkLauncher, "run_job", refuse)


def lines_by_table(summary: RunSummary) -> dict[str, str]:
    return {line.split()[0]: line for line in summary.render().splitlines()}


def test_missing_delivery_fails_the_table_and_its_downstream_does_not_run(
    isolated_home: Path, instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = load_config_from(PACKAGED, home=isolated_home)  # nothing delivered: the dump fails first
    start, end = (dt.date.fromisoformat(d) for d in DAYS)
    summary = run_range(
        loaded, start, end, instance, ["flights", "daily_carrier_delays"], log_file=isolated_home / "run.log"
    )
    lines = lines_by_table(summary)
    assert (
        "FAILED in raw/flights: MissingDelivery: no delivery for table 'flights', partition 2013-01-01"
        in lines["flights"]
    )
    assert lines["flights"].split()[1:3] == ["0", "0"]  # partitions, rows
    assert lines["daily_carrier_delays"].endswith("not run: upstream flights was not run")
    assert "passed" not in summary.render()
    assert not summary.ok and lines["run"].endswith(": FAILED")
    printed = capsys.readouterr().out  # the console: each cause once, where it happened
    assert printed.count("no delivery for table 'flights'") == 1, printed
    assert "1 failed, 2 not run (each above)\n" in printed, printed


def _simple_tables() -> dg.AssetsDefinition:
    """The shape of dp's one step, with the step's own failure bookkeeping: raw/good -> good (checks
    pass); raw/bad (fails) -> bad -> derived; blocked (a blocking check fails) -> after_blocked;
    plain (no checks)."""
    specs = [
        dg.AssetSpec(["raw", "good"]),
        dg.AssetSpec("good", deps=[["raw", "good"]]),
        dg.AssetSpec(["raw", "bad"]),
        dg.AssetSpec("bad", deps=[["raw", "bad"]]),
        dg.AssetSpec("derived", deps=["bad", "good"]),
        dg.AssetSpec("blocked"),
        dg.AssetSpec("after_blocked", deps=["blocked"]),
        dg.AssetSpec("plain"),
    ]
    checks = [
        dg.AssetCheckSpec("no_dup", asset=["raw", "good"]),
        dg.AssetCheckSpec("key_unique", asset="good", blocking=True),
        dg.AssetCheckSpec("key_unique", asset="bad"),
        dg.AssetCheckSpec("key_unique", asset="blocked", blocking=True),
    ]

    @dg.multi_asset(
        specs=specs,
        check_specs=checks,
        can_subset=True,
        partitions_def=PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def tables(context):  # type: ignore[no-untyped-def]  # no annotation: this module defers them
        failures = RunFailures()
        yield dg.MaterializeResult(asset_key=["raw", "good"])
        yield dg.AssetCheckResult(asset_key=["raw", "good"], check_name="no_dup", passed=True)
        yield dg.MaterializeResult(asset_key="good", metadata={"dagster/row_count": 5, "rows_quarantined": 1})
        yield dg.AssetCheckResult(asset_key="good", check_name="key_unique", passed=True)
        failures.fail(context, dg.AssetKey(["raw", "bad"]), "KeyError: 'no_such_column'")
        for key in ("bad", "derived"):
            failures.skip(
                context, dg.AssetKey(key), f"upstream {'; '.join(failures.blocking(keys_read[key]))}"
            )
        yield dg.MaterializeResult(asset_key="blocked")
        yield dg.AssetCheckResult(asset_key="blocked", check_name="key_unique", passed=False)
        failures.skip(context, dg.AssetKey("after_blocked"), "upstream blocked failed check(s) key_unique")
        yield dg.MaterializeResult(asset_key="plain")
        failures.raise_if_any()

    keys_read = {"bad": [dg.AssetKey(["raw", "bad"])], "derived": [dg.AssetKey("bad"), dg.AssetKey("good")]}
    return tables


def test_summary_from_the_event_log(instance: dg.DagsterInstance) -> None:
    result = dg.materialize(
        [_simple_tables()], instance=instance, tags=range_tags(*DAYS), raise_on_error=False
    )
    names = ["good", "bad", "derived", "blocked", "after_blocked", "plain"]
    summary = summarize(instance, result.run_id, result.success, names, days=2)
    lines = lines_by_table(summary)
    assert lines["good"].split()[1:4] == ["2", "10", "2"]  # partitions, rows, quarantined
    assert lines["good"].endswith("  all passed")
    assert summary.tables["good"].ok(2)
    assert lines["bad"].endswith("  FAILED in raw/bad: KeyError: 'no_such_column'")
    assert lines["derived"].endswith("  not run: upstream bad was not run")
    assert lines["blocked"].endswith("  FAILED checks: key_unique")
    assert lines["after_blocked"].endswith("  not run: upstream blocked failed check(s) key_unique")
    assert lines["plain"].endswith("  no checks declared") and summary.tables["plain"].ok(2)
    assert [n for n, t in summary.tables.items() if not t.ok(2)] == [
        "bad",
        "derived",
        "blocked",
        "after_blocked",
    ]
    assert not summary.ok and lines["run"].endswith(": FAILED")


def test_all_passed_needs_checks_that_ran() -> None:
    passed = TableSummary("t", partitions=1, planned_checks=["a", "b"], passed_checks=["a", "b"])
    assert passed.outcome() == "all passed" and passed.ok(1)
    none_ran = TableSummary("t", partitions=1, planned_checks=["a", "b"])
    assert none_ran.outcome() == "no checks ran" and not none_ran.ok(1)
    some_ran = TableSummary("t", partitions=1, planned_checks=["a", "b"], passed_checks=["a"])
    assert some_ran.outcome() == "1 passed; did not run: b" and not some_ran.ok(1)
    warned = TableSummary(
        "t", partitions=1, planned_checks=["a", "w"], passed_checks=["a"], warned_checks=["w"]
    )
    assert warned.outcome() == "1 passed; warned: w" and warned.ok(1)
    assert RunSummary("r", True, {"t": passed, "u": warned}, 1).render().endswith("run r: succeeded")
    assert not RunSummary("r", True, {"t": passed, "n": none_ran}, 1).ok


def test_error_line_is_the_first_line_trimmed() -> None:
    failure = SimpleNamespace(user_failure_data=SimpleNamespace(description="\n" + "x" * 300 + "\nsecond"))
    line = error_line(failure)
    assert len(line) == ERROR_WIDTH and line.endswith("…") and "second" not in line
