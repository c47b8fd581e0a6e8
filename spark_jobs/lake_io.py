"""The lake as the job sees it through Hadoop's FileSystem (any scheme Spark writes), and the
journaled per-partition swap that publishes a table's new partitions.

Publishing is crash-safe: rows are written to a staging folder, a journal names the partitions to
swap, then each partition is swapped in by two renames. A job killed at any point leaves each
partition old or new, never mixed; the next run over the table rolls an unfinished journal forward.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from pyspark.sql import SparkSession

from spark_jobs.contract import REJECTED, REJECTED_RECORD


def fault_point(name: str) -> None:
    """Tests kill the job here (DP_FAULT_KILL_AT=name) to prove publishing is crash-safe."""
    if os.environ.get("DP_FAULT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Hdfs:
    """The Hadoop FileSystem calls the job needs, for any URI scheme Spark can write."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm = spark._jvm  # type: ignore[attr-defined]
        self._conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]

    def _fs(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self._conf), path

    def exists(self, uri: str) -> bool:
        fs, path = self._fs(uri)
        return bool(fs.exists(path))

    def delete(self, uri: str) -> None:
        fs, path = self._fs(uri)
        if fs.exists(path):
            fs.delete(path, True)

    def rename(self, src: str, dst: str) -> None:
        fs, source = self._fs(src)
        _, target = self._fs(dst)
        fs.mkdirs(target.getParent())
        if not fs.rename(source, target):
            raise OSError(f"could not rename {src} to {dst}")

    def size(self, uri: str) -> int:
        fs, path = self._fs(uri)
        return int(fs.getContentSummary(path).getLength()) if fs.exists(path) else 0

    def list_names(self, uri: str) -> list[str]:
        fs, path = self._fs(uri)
        return [s.getPath().getName() for s in fs.listStatus(path)] if fs.exists(path) else []

    def write_text(self, uri: str, text: str) -> None:
        fs, path = self._fs(uri)
        out = fs.create(path, True)
        out.write(bytearray(text.encode()))
        out.close()

    def read_text(self, uri: str) -> str:
        fs, path = self._fs(uri)
        stream = fs.open(path)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()


class Publisher:
    """Swaps freshly written partitions into a table folder, journaled so a crash can be finished."""

    def __init__(self, hdfs: Hdfs, root: str, partition_column: str) -> None:
        self.hdfs, self.root, self.pc = hdfs, root, partition_column

    def staging(self, run: str) -> str:
        return f"{self.root}/_staging/{run}"

    def rejected(self, run: str) -> str:
        return f"{self.root}/{REJECTED}/{run}"

    def reject(self, run: str, record: dict[str, Any]) -> str:
        """Keep the run's staged version for inspection instead of publishing it (its blocking checks
        failed): ``_rejected/<run>/``, with what the audit found in ``_dp_rejected.json``. Readers skip
        folders whose name starts with ``_``, so nothing of it is visible."""
        target = self.rejected(run)
        if self.hdfs.exists(self.staging(run)):
            self.hdfs.rename(self.staging(run), target)
        self.hdfs.write_text(f"{target}/{REJECTED_RECORD}", json.dumps(record))
        return target

    def drop_superseded(self, days: list[str]) -> list[str]:
        """Delete the rejected versions of any of ``days``: once a later version of a day is published,
        publishing an older rejected one would overwrite newer data. Returns the runs dropped."""
        dropped = []
        for run in self.hdfs.list_names(f"{self.root}/{REJECTED}"):
            record = self.rejected_record(run)
            if record is None or set(record["days"]) & set(days):
                self.hdfs.delete(self.rejected(run))
                dropped.append(run)
        return dropped

    def rejected_record(self, run: str) -> dict[str, Any] | None:
        """What the audit found when it rejected ``run``'s version; None when there is none here."""
        path = f"{self.rejected(run)}/{REJECTED_RECORD}"
        return json.loads(self.hdfs.read_text(path)) if self.hdfs.exists(path) else None

    def publish(self, run: str, days: list[str], source: str | None = None) -> None:
        """Swap in the run's partitions from ``source`` (default: its staging; a rejected version when
        an override publishes it); a day with no rows there ends up absent (empty)."""
        source = source or self.staging(run)
        journal = f"{self.root}/_publish/{run}.json"
        actions = {d: "replace" if self.hdfs.exists(f"{source}/{self.pc}={d}") else "remove" for d in days}
        self.hdfs.write_text(journal, json.dumps({"run": run, "actions": actions, "source": source}))
        fault_point("journal_written")
        self._apply(run, actions, source)
        self.hdfs.delete(journal)

    def recover(self) -> list[str]:
        """Finish every journal a killed job left behind; return the runs it completed. Safe because
        a job runs only while its orchestrator holds the table's lock in the lake (taken over only
        from a holder that provably died): whatever other runs left here, they are dead."""
        finished = []
        for name in sorted(self.hdfs.list_names(f"{self.root}/_publish")):
            journal = f"{self.root}/_publish/{name}"
            entry = json.loads(self.hdfs.read_text(journal))
            self._apply(entry["run"], entry["actions"], entry.get("source") or self.staging(entry["run"]))
            self.hdfs.delete(journal)
            finished.append(entry["run"])
        for leftover in self.hdfs.list_names(f"{self.root}/_staging"):  # written, never journaled
            self.hdfs.delete(f"{self.root}/_staging/{leftover}")
        return finished

    def _apply(self, run: str, actions: dict[str, str], source: str) -> None:
        for i, (day, action) in enumerate(sorted(actions.items())):
            final = f"{self.root}/{self.pc}={day}"
            fresh = f"{source}/{self.pc}={day}"
            trash = f"{self.root}/_trash/{run}/{self.pc}={day}"
            if action == "replace" and not self.hdfs.exists(fresh):
                continue  # swapped before a crash
            if self.hdfs.exists(final):
                self.hdfs.rename(final, trash)
            if action == "replace":
                self.hdfs.rename(fresh, final)
            fault_point(f"swapped_{i + 1}")
        self.hdfs.delete(f"{self.root}/_trash/{run}")
        self.hdfs.delete(source)
