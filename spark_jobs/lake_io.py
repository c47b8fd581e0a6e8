"""The lake as the job sees it through Hadoop's FileSystem (any scheme Spark writes), and how a
table's partitions are published: by switching which version each day points to, never by moving or
overwriting the files a reader may be reading.

Every run writes its rows once, to a version folder of its own (``<table>/_versions/<run>/``), where
nobody reads them. Publishing a day then points it at that version: one object,
``<table>/_dp_current.json``, replaced whole (a single PUT on S3, a rename locally), for readers
that go by the lake, and the metastore's partitions for readers that go through the catalog.
A partition is therefore old or new for every reader, on a local disk and on S3 alike, where a
rename is a copy. A journal makes the switch crash-safe: the next run over the table rolls an
unfinished one forward. A replaced version stays readable for queries that started before the
switch, and is deleted after the retention (``[processing] keep_superseded_hours``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from spark_jobs.contract import CURRENT, REJECTED, REJECTED_RECORD, VERSIONS

SPARK_SCHEMA_KEY = "org.apache.spark.sql.parquet.row.metadata"  # Spark's schema in a Parquet footer
JOURNALS = "_publish"  # <table>/_publish/<run>.json: a switch in progress

# Points the catalog's partitions at their new locations ({day: location, or None to drop it}).
CatalogSwitch = Callable[[dict[str, str | None]], None]


_FAULT_HITS: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """Tests kill the job here to prove publishing is crash-safe: ``DP_FAULT_KILL_AT=name`` the first
    time the job passes ``name``, ``name#2`` the second time (a table's quarantine publishes first)."""
    wanted = os.environ.get("DP_FAULT_KILL_AT")
    if not wanted or wanted.split("#")[0] != name:
        return
    _FAULT_HITS[name] += 1
    if _FAULT_HITS[name] == int(wanted.partition("#")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


class Hdfs:
    """The Hadoop FileSystem calls the job needs, for any URI scheme Spark can write."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm = spark._jvm  # type: ignore[attr-defined]
        self._conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        # Resolved once: py4j resolves ``jvm.org.apache.hadoop.fs.Path`` a package at a time, and each
        # package it tries as a class first, a search of every jar (1.5 ms a call, against 0.25 ms).
        self._path = self._jvm.org.apache.hadoop.fs.Path

    def _fs(self, uri: str) -> tuple[Any, Any]:
        path = self._path(uri)
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

    def move_tree(self, src: str, dst: str) -> None:
        """Move folder ``src`` to ``dst``, resumably: on S3 a folder rename copies file by file, so
        after a kill both exist; then the files not yet at ``dst`` move one by one (a file's copy is
        whole or absent) and ``src`` goes."""
        fs, source = self._fs(src)
        if not fs.exists(source):
            return
        if not self.exists(dst):
            self.rename(src, dst)
            return
        prefix = fs.makeQualified(source).toString()
        files = fs.listFiles(source, True)
        while files.hasNext():
            path = files.next().getPath().toString()
            target = dst + path[len(prefix) :]
            if not self.exists(target):
                self.rename(path, target)
        self.delete(src)

    def size(self, uri: str) -> int:
        fs, path = self._fs(uri)
        return int(fs.getContentSummary(path).getLength()) if fs.exists(path) else 0

    def list_names(self, uri: str) -> list[str]:
        fs, path = self._fs(uri)
        return [s.getPath().getName() for s in fs.listStatus(path)] if fs.exists(path) else []

    def spark_schema(self, folder: str) -> str | None:
        """The schema (JSON) Spark stored in the footer of a Parquet file in ``folder``, read on the
        driver: what ``spark.read.parquet`` infers from such a footer, without the Spark job it runs
        to read it. None when the folder holds no Parquet file that Spark wrote."""
        fs, path = self._fs(folder)
        parquet = self._jvm.org.apache.parquet.hadoop
        for status in fs.listStatus(path):
            name = status.getPath().getName()
            if name.endswith(".parquet") and not name.startswith(("_", ".")):
                footer = parquet.ParquetFileReader.open(
                    parquet.util.HadoopInputFile.fromPath(status.getPath(), self._conf)
                )
                try:
                    return footer.getFooter().getFileMetaData().getKeyValueMetaData().get(SPARK_SCHEMA_KEY)
                finally:
                    footer.close()
        return None

    def write_text(self, uri: str, text: str) -> None:
        fs, path = self._fs(uri)
        out = fs.create(path, True)
        out.write(bytearray(text.encode()))
        out.close()

    def replace_text(self, uri: str, text: str) -> None:
        """Replace ``uri`` whole, never visible half-written: a PUT is atomic on S3; on other file
        systems the text is written beside it and renamed over it."""
        if uri.startswith(("s3://", "s3a://")):
            self.write_text(uri, text)
            return
        fs, path = self._fs(uri)
        _, partial = self._fs(f"{uri}.partial")
        self.write_text(f"{uri}.partial", text)
        if not fs.rename(partial, path):  # a local rename replaces; HDFS's refuses: make room first
            fs.delete(path, False)
            if not fs.rename(partial, path):
                raise OSError(f"could not replace {uri}")

    def read_text(self, uri: str) -> str:
        fs, path = self._fs(uri)
        stream = fs.open(path)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()


def referenced_versions(state: dict[str, dict[str, Any]]) -> set[str]:
    """The runs whose version folder a published day, or a replaced one still kept, points to."""
    folders = (*state["partitions"].values(), *state["superseded"])
    return {f.split("/")[1] for f in folders if f.startswith(f"{VERSIONS}/")}


class Publisher:
    """Publishes a table's partitions (see the module's docstring): each run writes a version of its
    own, and publishing points the run's days at it, journaled so a crash can be finished."""

    def __init__(self, hdfs: Hdfs, root: str, partition_column: str) -> None:
        self.hdfs, self.root, self.pc = hdfs, root, partition_column

    def version(self, run: str) -> str:
        """Where ``run`` writes its version of the table; nobody reads it until it is published."""
        return f"{self.root}/{VERSIONS}/{run}"

    def rejected(self, run: str) -> str:
        return f"{self.root}/{REJECTED}/{run}"

    def state(self) -> dict[str, dict[str, Any]]:
        """What is published: ``partitions`` {day: folder relative to the table}, and ``superseded``
        {folder: when it was replaced, epoch seconds}. A table written before versions existed has
        its partitions directly under the table folder, and is taken as it is."""
        for uri in (f"{self.root}/{CURRENT}", f"{self.root}/{CURRENT}.partial"):
            # The .partial only when the object is missing: a file system whose rename does not
            # replace deletes the object after writing the .partial whole, then renames it.
            if self.hdfs.exists(uri):
                state = json.loads(self.hdfs.read_text(uri))
                return {"partitions": state["partitions"], "superseded": state["superseded"]}
        prefix = f"{self.pc}="
        legacy = [n for n in self.hdfs.list_names(self.root) if n.startswith(prefix)]
        return {"partitions": {n.removeprefix(prefix): n for n in legacy}, "superseded": {}}

    def published(self, days: list[str] | None = None) -> dict[str, str]:
        """Where each published day (of ``days``, default all) is read: {day: folder URI}."""
        partitions = self.state()["partitions"]
        return {d: f"{self.root}/{p}" for d, p in sorted(partitions.items()) if days is None or d in days}

    def read(self, spark: SparkSession, days: list[str] | None = None) -> DataFrame | None:
        """The published rows of ``days`` (default all) with the partition column, as a reader going
        by the lake sees them; None when none is published."""
        by_version: dict[str, list[str]] = defaultdict(list)
        for folder in self.published(days).values():
            by_version[folder.rsplit("/", 1)[0]].append(folder)
        frames = [spark.read.option("basePath", base).parquet(*paths) for base, paths in by_version.items()]
        if not frames:
            return None
        merged = frames[0]
        for frame in frames[1:]:  # versions written before and after a schema evolution
            merged = merged.unionByName(frame, allowMissingColumns=True)
        return merged

    def reject(self, run: str, record: dict[str, Any]) -> str:
        """Keep the run's version for inspection instead of publishing it (its blocking checks
        failed): ``_rejected/<run>/``, with what the audit found in ``_dp_rejected.json``. Readers skip
        folders whose name starts with ``_``, so nothing of it is visible."""
        target = self.rejected(run)
        if self.hdfs.exists(self.version(run)):
            self.hdfs.rename(self.version(run), target)
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

    def publish(
        self,
        run: str,
        days: list[str],
        catalog: CatalogSwitch | None = None,
        from_rejected: bool = False,
        beside: list[Publisher] | None = None,
    ) -> None:
        """Point ``days`` at ``run``'s version (a day with no rows in it is no longer published), in
        the lake and then in the catalog; the ``beside`` zones (the table's quarantine) switch under
        the same journal, first, so a crash leaves all of them old or all new once recovered.
        ``from_rejected``: the version is the one the run's checks held back, published by a
        reviewed override."""
        zones = [b.root for b in beside or []]
        entry = {"run": run, "days": days, "from_rejected": from_rejected, "zones": zones}
        journal = f"{self.root}/{JOURNALS}/{run}.json"
        self.hdfs.replace_text(journal, json.dumps(entry))  # never read half-written
        fault_point("journal_written")
        self._finish(entry, catalog)
        self.hdfs.delete(journal)

    def recover(self, catalog: CatalogSwitch | None = None) -> list[str]:
        """Finish every publish a killed job left behind (its quarantine's switch included), and
        delete the versions nobody published (their runs died writing them); return the runs whose
        publish it completed. Call it on a table before its quarantine. Safe because a job runs only
        while its orchestrator holds the table's lock in the lake (taken over only from a holder that
        provably died): whatever other runs left here, they are dead."""
        finished = []
        for name in sorted(self.hdfs.list_names(f"{self.root}/{JOURNALS}")):
            journal = f"{self.root}/{JOURNALS}/{name}"
            if not name.endswith(".json"):  # a journal the kill cut while writing: nothing applied
                self.hdfs.delete(journal)
                continue
            entry = json.loads(self.hdfs.read_text(journal))
            if "days" not in entry:
                raise RuntimeError(
                    f"{journal} is a publish journal of a dp release before versioned partitions; "
                    "finish it by running that release once over this table, then upgrade"
                )
            self._finish(entry, catalog)
            self.hdfs.delete(journal)
            finished.append(entry["run"])
        kept = referenced_versions(self.state())
        for run in self.hdfs.list_names(f"{self.root}/{VERSIONS}"):
            if run not in kept:
                self.hdfs.delete(self.version(run))
        return finished

    def expire(self, keep_seconds: float) -> list[str]:
        """Delete the versions replaced more than ``keep_seconds`` ago (queries that started before
        the switch have had that long); returns the folders deleted, relative to the table."""
        state = self.state()
        now = time.time()
        expired = [p for p, when in state["superseded"].items() if now - when >= keep_seconds]
        if not expired:
            return []
        for folder in expired:
            del state["superseded"][folder]
        self.hdfs.replace_text(f"{self.root}/{CURRENT}", json.dumps(state, sort_keys=True))
        for folder in expired:
            self.hdfs.delete(f"{self.root}/{folder}")
        for run in {p.split("/")[1] for p in expired if p.startswith(f"{VERSIONS}/")} - referenced_versions(
            state
        ):
            self.hdfs.delete(self.version(run))  # nothing of it is left: drop the empty folder
        return sorted(expired)

    def _finish(self, entry: dict[str, Any], catalog: CatalogSwitch | None) -> None:
        run, days, restore = entry["run"], entry["days"], entry["from_rejected"]
        for root in entry.get("zones", []):
            Publisher(self.hdfs, root, self.pc)._apply(run, days, restore, None)
        self._apply(run, days, restore, catalog)

    def _apply(self, run: str, days: list[str], from_rejected: bool, catalog: CatalogSwitch | None) -> None:
        if from_rejected:  # the reviewed version returns among the versions, resumably on S3
            self.hdfs.move_tree(self.rejected(run), self.version(run))
        state = self.state()
        partitions, superseded = state["partitions"], state["superseded"]
        now, switched = time.time(), {}
        for day in days:
            folder = f"{VERSIONS}/{run}/{self.pc}={day}"
            old = partitions.get(day)
            if self.hdfs.exists(f"{self.root}/{folder}"):
                partitions[day] = folder
            else:
                partitions.pop(day, None)
            if old and old != partitions.get(day):
                superseded.setdefault(old, now)
            superseded.pop(partitions.get(day, ""), None)
            switched[day] = f"{self.root}/{partitions[day]}" if day in partitions else None
        self.hdfs.replace_text(f"{self.root}/{CURRENT}", json.dumps(state, sort_keys=True))
        fault_point("lake_switched")
        if catalog is not None:
            catalog(switched)
