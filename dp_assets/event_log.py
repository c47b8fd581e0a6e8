"""The event log of dp's local Dagster instance: Dagster's SQLite storage, with one engine per database.

Dagster's ``SqliteEventLogStorage`` builds a SQLAlchemy engine for every statement batch and disposes
it, so each stored event compiles its statements anew and syncs the write-ahead log to disk. A
month's demo stores some 600 events (a planned event and a materialization per asset and day), and
that was the Dagster process's largest cost: about 15 ms per event on this machine, on the cores
Spark runs on. This storage keeps an engine per database (the index and recent runs), so statements
are compiled once, and commits with ``synchronous=NORMAL``, the setting SQLite documents for WAL
databases: a commit survives a process crash, and only a power loss can take the last ones back.
Files, schema and readers are Dagster's own: the UI, the daemon and ``dagster`` read them as before.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

BUSY_TIMEOUT_SECONDS = 30  # as Dagster's: another process (the UI, the daemon) may hold a write lock
RECENT_RUNS = 4  # run databases whose engines are kept: a run writes to its own only


def _commit_without_fsync(connection: Any, _record: Any) -> None:
    connection.execute("PRAGMA synchronous=NORMAL")


class LocalEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with its engines kept (see the module). ``base_dir`` defaults to
    where Dagster's default storage keeps the event log, ``$DAGSTER_HOME/history/runs``."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables: set[str] = set()
        # Reentrant: Dagster may ask ``has_table`` while it holds a connection, and that takes it too.
        self._reentrant_lock = threading.RLock()
        if base_dir is None:
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise dg.DagsterInvariantViolationError(
                    "dp's dagster.yaml keeps the event log in $DAGSTER_HOME/history/runs, and DAGSTER_HOME "
                    "is not set: run `dp ui` (it uses <DP_HOME>/dagster_home), or set DAGSTER_HOME to the "
                    "instance's folder before `dagster dev`"
                )
            base_dir = os.path.join(home, "history", "runs")
        super().__init__(base_dir, inst_data)

    @property
    def _db_lock(self) -> Any:
        return self._reentrant_lock

    @_db_lock.setter
    def _db_lock(self, _: Any) -> None:
        pass  # Dagster's __init__ sets a plain Lock, which ``has_table`` inside a connection would deadlock

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> LocalEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, created (and its database initialized) on first use; called under
        ``_db_lock``."""
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=NullPool,
                connect_args={"timeout": BUSY_TIMEOUT_SECONDS},
            )
            db.event.listen(engine, "connect", _commit_without_fsync)
        if shard not in self._initialized_dbs:  # new, or wiped since
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        self._engines.move_to_end(shard)
        runs = [s for s in self._engines if s != INDEX_SHARD_NAME]
        for old in runs[: max(0, len(runs) - RECENT_RUNS)]:
            self._engines.pop(old).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock, self._engine(shard).connect() as connection, connection.begin():
            yield connection

    def has_table(self, table_name: str) -> bool:
        """Whether the index database has the table; a table once there stays (migrations add them)."""
        if table_name not in self._tables:
            with self._db_lock:
                engine = self._engine(INDEX_SHARD_NAME)
                with engine.connect() as connection:
                    if engine.dialect.has_table(connection, table_name):
                        self._tables.add(table_name)
        return table_name in self._tables

    def upgrade(self) -> None:
        with self._db_lock:
            self._forget_engines()
            super().upgrade()
            self._forget_engines()

    def wipe(self) -> None:
        with self._db_lock:
            super().wipe()
            self._forget_engines()

    def dispose(self) -> None:
        self._forget_engines()
        super().dispose()

    def _forget_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()
            self._tables.clear()
