"""No Pipes message is ever half-read: a job that writes one large message in small pieces with
pauses (what a loaded machine makes of one large write) reaches Dagster whole, with every message
after it. Dagster's own file reader parses the partial line and loses the rest. And each message
reaches the asset while the job still runs (the EMR launchers' twin is in test_emr_launchers)."""

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest
from dagster_pipes import encode_param

from dp_assets.launchers.base import SparkLauncher
from dp_assets.launchers.local import LineSafeFileMessageReader, LocalSparkLauncher
from dp_assets_tests.helpers import AWAIT_HANDSHAKE, materializations, touching_on_materialization
from spark_jobs.contract import AWAIT_RUN_KEY
from spark_jobs.pipes_bootstrap import OwnerGone, await_run, awaits_run

SLOW_JOB = """
import json
import time
from contextlib import contextmanager

from dagster_pipes import PipesDefaultMessageWriter, PipesFileMessageWriterChannel, open_dagster_pipes


class SlowChannel(PipesFileMessageWriterChannel):
    def write_message(self, message):
        text = json.dumps(message) + "\\n"
        with open(self._path, "a", encoding="utf-8") as f:
            for i in range(0, len(text), 8192):
                f.write(text[i : i + 8192])
                f.flush()
                time.sleep(0.02)


class SlowWriter(PipesDefaultMessageWriter):
    @contextmanager
    def open(self, params):
        yield SlowChannel(params[self.FILE_PATH_KEY])


with open_dagster_pipes(message_writer=SlowWriter()) as pipes:
    stats = {f"2013-01-{d:02d}": {"rows": d, "column_" + "x" * 40: list(range(400))} for d in range(1, 32)}
    pipes.report_asset_materialization(metadata={"partition_stats": {"raw_value": stats, "type": "json"}})
    pipes.report_asset_check("after_the_large_message", passed=True)
"""


def run_with(reader: dg.PipesMessageReader, script: Path) -> dg.ExecuteInProcessResult:
    @dg.asset(check_specs=[dg.AssetCheckSpec("after_the_large_message", asset="big")])
    def big(context: dg.AssetExecutionContext):  # type: ignore[no-untyped-def]
        client = dg.PipesSubprocessClient(message_reader=reader)
        yield from client.run(context=context, command=[sys.executable, str(script)]).get_results()

    return dg.materialize([big], raise_on_error=False)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "slow_job.py"
    path.write_text(SLOW_JOB)
    return path


def test_a_large_message_written_in_pieces_arrives_whole(script: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        result = run_with(LineSafeFileMessageReader(os.path.join(folder, "messages")), script)
    assert result.success
    (materialization,) = materializations(result, "big")
    assert len(materialization.metadata["partition_stats"].value) == 31  # type: ignore[arg-type]
    assert [e.check_name for e in result.get_asset_check_evaluations()] == ["after_the_large_message"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # its reader dies
def test_dagsters_own_file_reader_loses_it(script: Path) -> None:
    """Why dp has its own reader: the measured failure (JSONDecodeError in the reader thread)."""
    result = run_with(dg.PipesTempFileMessageReader(), script)
    assert not result.success or not result.get_asset_check_evaluations()


WAITING_JOB = (
    """
import os
import time

from spark_jobs.pipes_bootstrap import end_with_parent, open_pipes  # from spark_jobs.zip, as dp's jobs

end_with_parent()
with open_pipes() as pipes:
    pipes.report_asset_materialization(metadata={"rows": 1})
    handshake = pipes.extras["handshake"]
"""
    + textwrap.indent(AWAIT_HANDSHAKE, " " * 4)
    + """
    pipes.report_asset_check("after_the_handshake", passed=True)
"""
)


def test_the_local_launcher_hands_results_on_while_the_job_runs(tmp_path: Path) -> None:
    """spark-submit runs a job that waits, after its materialization, until the asset has received
    it: a launcher that handed results over only once the process ended would leave it waiting."""
    script, handshake = tmp_path / "waiting_job.py", tmp_path / "received"
    script.write_text(WAITING_JOB)

    @dg.asset(check_specs=[dg.AssetCheckSpec("after_the_handshake", asset="waiting")])
    def waiting(context: dg.AssetExecutionContext, spark: SparkLauncher):  # type: ignore[no-untyped-def]
        yield from touching_on_materialization(
            spark.run_job(context, str(script), {"handshake": str(handshake)}), handshake
        )

    result = dg.materialize([waiting], resources={"spark": LocalSparkLauncher()}, raise_on_error=False)
    assert result.success
    assert [e.check_name for e in result.get_asset_check_evaluations()] == ["after_the_handshake"]


def test_a_run_that_stops_reading_stops_its_local_job(tmp_path: Path) -> None:
    """The run fails while it handles a result the job reported, and closes what the launcher
    yields (a traceback would keep it open): spark-submit is stopped, and the job's Python driver
    with it, not left waiting."""
    script = tmp_path / "waiting_job.py"
    script.write_text(WAITING_JOB)

    @dg.asset
    def waiting(context: dg.AssetExecutionContext, spark: SparkLauncher):  # type: ignore[no-untyped-def]
        with closing(spark.run_job(context, str(script), {"handshake": str(tmp_path / "never")})) as events:
            for event in events:
                raise RuntimeError(f"failed while handling {type(event).__name__}")
        yield from ()

    result = dg.materialize([waiting], resources={"spark": LocalSparkLauncher()}, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert "failed while handling" in str(error), error  # its own failure, so the job had started
    deadline = time.monotonic() + 10  # the driver exits on its SIGINT, just after spark-submit
    while running := subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, f"still running: {running}"
        time.sleep(0.2)


def test_an_application_started_ahead_waits_for_its_run_only_while_dp_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``await_run``: it returns once the run's step wrote the context and created the message file,
    and ends, naming the pid, once the dp process that started it is gone (killed before its run
    existed), instead of waiting for nobody."""
    context, messages = tmp_path / "context", tmp_path / "messages"

    def params(owner: int) -> None:
        monkeypatch.setenv(
            "DAGSTER_PIPES_CONTEXT", encode_param({"path": str(context), AWAIT_RUN_KEY: owner})
        )
        monkeypatch.setenv("DAGSTER_PIPES_MESSAGES", encode_param({"path": str(messages)}))

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    params(gone.pid)
    assert awaits_run()
    with pytest.raises(OwnerGone, match=rf"dp \(pid {gone.pid}\) started this application ahead of its run"):
        await_run()
    params(os.getpid())
    context.write_text("{}")
    messages.touch()
    assert await_run() < 1.0
    monkeypatch.setenv("DAGSTER_PIPES_CONTEXT", encode_param({"path": str(context)}))
    assert not awaits_run()  # started by its step, as every launcher does
