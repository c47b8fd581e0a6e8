"""Where each zone of the lake lives for a table and day: one place that knows the layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from dp_assets.aws import data_session, spark_s3_credentials
from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import Table
from spark_jobs.contract import CURRENT, REJECTED, REJECTED_RECORD
from spark_jobs.dumping.layout import TableLayout
from spark_jobs.storage import Store, store_for

if TYPE_CHECKING:
    import pyarrow.dataset as pads

    from spark_jobs.dumping.deliveries import TableDump

QUARANTINE_ZONE = "_quarantine"


@dataclass(frozen=True)
class Lake:
    loaded: LoadedConfig
    e2e_test: bool = False  # read deliveries from the end-to-end test folder instead of the source

    @cached_property
    def session(self) -> boto3.Session | None:
        """Data access through the [aws] role chain (refreshed); None: the run's own credentials."""
        return data_session(self.loaded.config.aws)

    @cached_property
    def landing(self) -> Store:
        return store_for(
            self.loaded.e2e_input_path if self.e2e_test else self.loaded.input_path, self.session
        )

    @cached_property
    def store(self) -> Store:
        return store_for(self.loaded.output_path, self.session)

    def spark_credentials(self) -> dict[str, dict[str, str]]:
        """Temporary keys per lake and landing bucket for a Spark job, when a role chain is set."""
        return spark_s3_credentials(self.session, [self.loaded.input_path, self.loaded.output_path])

    def table(self, name: str) -> Table:
        return self.loaded.config.tables[name]

    def layout(self, name: str) -> TableLayout:
        table = self.table(name)
        return TableLayout(name, table.partition_column, getattr(table.source, "prefix", ""))

    def dump(self, name: str) -> TableDump:
        """What dumping table ``name`` reads and writes, and how it parses its files."""
        from spark_jobs.dumping.deliveries import TableDump  # pyarrow: the dump's only

        table, layout = self.table(name), self.layout(name)
        return TableDump(
            layout.name,
            layout.partition_column,
            layout.source_prefix,
            landing=self.landing,
            store=self.store,
            file_format=getattr(table.source, "format", "csv"),  # an extract is CSV
            csv=table.source.csv.options(),
            columns=tuple(c.name for c in table.columns),
        )

    def delivery_prefix(self, name: str, day: str) -> str:
        """Where upstream drops a day's files, relative to input_path."""
        return self.layout(name).delivery_prefix(day)

    def raw_root(self, name: str) -> str:
        return self.layout(name).raw_root()

    def staged_root(self, name: str) -> str:
        return self.layout(name).staged_root()

    def staged_prefix(self, name: str, day: str) -> str:
        return self.layout(name).staged_prefix(day)

    def delivery_index(self, name: str, sha256: str) -> str:
        return self.layout(name).delivery_index(sha256)

    def schema_path(self, name: str) -> str:
        """The table's established schema: design columns plus those added by evolution."""
        return f"{name}/_dp_schema.json"

    def rejected_record(self, name: str, run: str) -> str:
        """Why the checks of ``run`` held back its version of table ``name`` (written by the job)."""
        return f"{name}/{REJECTED}/{run}/{REJECTED_RECORD}"

    def quarantine_root(self, name: str) -> str:
        return f"{QUARANTINE_ZONE}/{name}"

    def isolated_prefix(self, name: str, day: str) -> str:
        return self.layout(name).isolated_prefix(day)

    def raw_prefix(self, name: str, day: str) -> str:
        return self.layout(name).raw_prefix(day)

    def manifest_path(self, name: str, day: str) -> str:
        return self.layout(name).manifest_path(day)

    def uri(self, path: str) -> str:
        return self.store.uri(path)


def published_folders(table: str | Path) -> dict[str, Path]:
    """Where a reader going by a local lake reads each published day of ``table`` ({day: folder}),
    from its ``_dp_current.json``; the catalog points at the same folders."""
    current = Path(table) / CURRENT
    if current.exists():
        return {d: Path(table) / f for d, f in json.loads(current.read_text())["partitions"].items()}
    # A table written before versions existed: its day folders, as they are.
    folders = (p for p in Path(table).glob("[!._]*=*") if p.is_dir())
    return {p.name.split("=", 1)[1]: p for p in sorted(folders)}


def published_dataset(table: str | Path) -> pads.Dataset:
    """A table of a local lake as readers going by the lake see it: the published version of each
    day, with the day column from the folder names (``.to_table()`` reads it)."""
    import pyarrow.dataset as pads  # 1 s to import (pandas with it): only tests and the demo read tables

    files = [str(f) for folder in published_folders(table).values() for f in sorted(folder.glob("[!._]*"))]
    return pads.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(table))
