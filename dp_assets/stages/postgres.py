"""Extract a day of a PostgreSQL table into the raw zone, as the dump's delivery.

`COPY (SELECT …) TO STDOUT (FORMAT csv, HEADER)` streams the rows through psycopg in chunks straight
into the raw file (sha256 on the way), so memory stays bounded whatever the table size. All files of
a day come from one REPEATABLE READ, READ ONLY transaction: the splits of a table see one snapshot.
The connection string comes from the environment variable the source names and never reaches a log,
a manifest or metadata: only host, port and database do.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from dp_assets.config.model import PostgresSource
from spark_jobs.storage import Store

CHUNK = 1 << 20


def dsn_for(name: str, source: PostgresSource) -> str:
    dsn = os.environ.get(source.dsn_env)
    if not dsn:
        raise dg.Failure(
            f"table {name!r}: source.dsn_env names {source.dsn_env}, which is not set. Set it to the "
            "PostgreSQL connection string (e.g. postgresql://user@host:5432/db; put the password in "
            "~/.pgpass or PGPASSWORD). For the demo, `dp demo` starts a local server and sets it."
        )
    return dsn


def server_label(dsn: str) -> str:
    """host:port/dbname of a connection string: what is safe to show."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    host = str(info.get("host") or "localhost")
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


def connect(name: str, source: PostgresSource) -> tuple[psycopg.Connection, str]:
    """A connection to the table's server, and the server's label (host:port/db) for messages."""
    dsn = dsn_for(name, source)
    try:
        return psycopg.connect(dsn, connect_timeout=15, application_name="dp"), server_label(dsn)
    except psycopg.OperationalError as e:
        # psycopg's message names host and port, never the password
        raise dg.Failure(
            f"table {name!r}: cannot connect to PostgreSQL at {server_label(dsn)} "
            f"(from {source.dsn_env}): {str(e).strip()}. Check the server is up and the credentials."
        ) from None


def _filters(source: PostgresSource, day: str) -> list[sql.Composable]:
    where: list[sql.Composable] = []
    if source.date_column:
        where.append(
            sql.SQL("{col} >= {day}::date AND {col} < {day}::date + 1").format(
                col=sql.Identifier(source.date_column), day=sql.Literal(day)
            )
        )
    if source.condition:
        where.append(sql.SQL("(") + sql.SQL(source.condition) + sql.SQL(")"))  # type: ignore[arg-type]
    return where


def _select(source: PostgresSource, where: list[sql.Composable]) -> sql.Composed:
    table = sql.Identifier(source.schema_name, source.table)
    query = sql.SQL("SELECT * FROM {}").format(table)
    if where:
        query = query + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    if source.split_by:
        query = query + sql.SQL(" ORDER BY {}").format(sql.Identifier(source.split_by))
    return query


def _split_filters(
    cur: psycopg.Cursor, source: PostgresSource, where: list[sql.Composable]
) -> list[list[sql.Composable]]:
    """`splits` contiguous ranges of split_by over the day's rows (NULLs go with the first)."""
    if not source.split_by:
        return [where]
    col = sql.Identifier(source.split_by)
    bounds = sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(
        c=col, t=sql.Identifier(source.schema_name, source.table)
    )
    if where:
        bounds = bounds + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    low, high = cur.execute(bounds).fetchone() or (None, None)
    if low is None:
        return [where]
    step = max(1, -(-(int(high) - int(low) + 1) // source.splits))
    parts = []
    for start in range(int(low), int(high) + 1, step):
        rng = sql.SQL("{c} >= {lo} AND {c} < {hi}").format(c=col, lo=start, hi=start + step)
        if start == int(low):
            rng = sql.SQL("(") + rng + sql.SQL(" OR {c} IS NULL)").format(c=col)
        parts.append([*where, rng])
    return parts


def extract_partition(
    name: str, source: PostgresSource, day: str, store: Store, raw_prefix: str
) -> list[dict[str, Any]]:
    """Write the day's rows as CSV file(s) under raw_prefix; one entry per file, like copied deliveries."""
    entries = []
    conn, label = connect(name, source)
    with conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            cur.execute("SET LOCAL extra_float_digits = 1")  # floats round-trip exactly
            try:
                parts = _split_filters(cur, source, _filters(source, day))
                for i, where in enumerate(parts):
                    file = f"{source.table}_{day}" + (f"_part{i:02d}" if len(parts) > 1 else "") + ".csv"
                    query = _select(source, where)
                    copy = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER true)").format(query)
                    digest, size = hashlib.sha256(), 0
                    with cur.copy(copy) as stream, store.open_write(f"{raw_prefix}/{file}") as out:
                        for chunk in stream:  # psycopg's buffer, hashed and written without a copy
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                    entries.append(
                        {
                            "file": file,
                            "source": f"postgresql://{label}/{source.schema_name}.{source.table}",
                            "query": query.as_string(conn),
                            "bytes": size,
                            "sha256": digest.hexdigest(),
                        }
                    )
            except psycopg.errors.UndefinedTable:
                raise dg.Failure(
                    f"table {name!r}, partition {day}: {source.schema_name}.{source.table} does not exist "
                    f"on {label}; check source.schema and source.table"
                ) from None
            except psycopg.errors.UndefinedColumn as e:
                raise dg.Failure(
                    f"table {name!r}, partition {day}: {e.diag.message_primary} in "
                    f"{source.schema_name}.{source.table} on {label}; check source.date_column, "
                    "split_by and condition"
                ) from None
    return entries
