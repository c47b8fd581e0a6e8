"""Derived tables as SQL files: each file is one SELECT whose upstream tables are parsed from the SQL.

Dependencies are read from the SQL rather than declared, so they cannot drift from what the query
reads. Everything here is pure Python (sqlglot, Spark dialect): a broken transform fails at load
time with a message naming the file, table and column, before any Spark job starts.

Identifiers are normalized as Spark resolves them (case-insensitively, to lower case), so table
names, `upstream`, `columns` and `lineage` are lower case, like the configured tables' names.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import PurePath

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, TokenError
from sqlglot.lineage import lineage
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.schema import MappingSchema

DIALECT = "spark"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")  # as configured table names: usable unquoted in SQL
_UNTYPED = (exp.DataType.Type.UNKNOWN, exp.DataType.Type.NULL)

Schemas = dict[str, dict[str, str]]  # table -> column -> Spark type
Sources = dict[str, exp.Table | Scope]  # alias -> what it names, as in a sqlglot Scope


@dataclass(frozen=True)
class Transform:
    """One SQL file: what it reads, what it outputs, and where each output column comes from."""

    name: str
    file: str
    sql: str
    upstream: tuple[str, ...]
    columns: tuple[str, ...]
    lineage: dict[str, tuple[tuple[str, str], ...]]


class TransformError(ValueError):
    """A broken transform: the message names the file, and the table and column where known, and what
    to do, so that whoever edits the SQL can fix it without reading a stack trace."""


def parse_transform(name: str, file: str, sql: str, schemas: Schemas) -> Transform:
    """Parse, validate and describe one transform; `schemas` must hold every table it reads."""
    query = _parse(file, sql)
    _check_known(file, _upstream(query), schemas)
    return _resolve(name, file, sql, query, schemas)[0]


def discover(files: dict[str, str], schemas: Schemas) -> dict[str, Transform]:
    """All transforms in `files` (file name -> SQL), keyed by name in dependency order.

    Transforms are resolved readers-last so that a transform's output columns and inferred types
    are the schema of the transforms reading it.
    """
    by_name: dict[str, str] = {}
    for file in sorted(files):
        name = PurePath(file).stem
        if not _NAME.match(name):
            raise TransformError(
                f"{file}: transform name {name!r} (the file's stem) must be snake_case "
                "(lower-case letters, digits, _) to be readable in SQL; rename the file"
            )
        if name in by_name:
            raise TransformError(f"{by_name[name]} and {file} both define transform {name!r}; rename one")
        if name in schemas:
            raise TransformError(
                f"{file}: transform {name!r} is named like configured table {name!r}; rename the file"
            )
        by_name[name] = file
    queries = {name: _parse(file, files[file]) for name, file in by_name.items()}
    reads = {name: _upstream(query) for name, query in queries.items()}
    for name, file in by_name.items():
        _check_known(file, reads[name], {*schemas, *by_name})
    resolved: dict[str, Transform] = {}
    available = dict(schemas)
    for name in _order({n: [r for r in reads[n] if r in by_name] for n in by_name}, by_name):
        file = by_name[name]
        resolved[name], available[name] = _resolve(name, file, files[file], queries[name], available)
    return resolved


def topological_order(transforms: dict[str, Transform]) -> list[str]:
    """Transform names, each after the transforms it reads (ties by name, so the order is stable)."""
    deps = {name: [u for u in t.upstream if u in transforms] for name, t in transforms.items()}
    return _order(deps, {name: t.file for name, t in transforms.items()})


def _order(deps: dict[str, list[str]], files: dict[str, str]) -> list[str]:
    sorter = TopologicalSorter({name: deps[name] for name in sorted(deps)})
    try:
        sorter.prepare()
    except CycleError as e:
        cycle = list(reversed(e.args[1]))  # graphlib lists dependencies first; show readers first
        raise TransformError(
            f"dependency cycle (each file reads the next): {' -> '.join(files[n] for n in cycle)}; "
            "break it by removing one of these reads"
        ) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += ready
        sorter.done(*ready)
    return order


def _parse(file: str, sql: str) -> exp.Query:
    """The file's single query, or an error naming the file and, for syntax errors, the position."""
    try:
        statements = [s for s in sqlglot.parse(sql, dialect=DIALECT) if s is not None]
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        raise TransformError(
            f"{file}: SQL syntax error at line {err.get('line')}, column {err.get('col')} "
            f"(near {err.get('highlight')!r}): {err.get('description', e)}"
        ) from None
    except TokenError as e:
        raise TransformError(f"{file}: SQL syntax error: {e} (an unclosed quote or comment?)") from None
    if len(statements) != 1 or not isinstance(statements[0], (exp.Select, exp.SetOperation)):
        kinds = ", ".join(type(s).__name__.upper() for s in statements) or "nothing"
        raise TransformError(
            f"{file}: a transform is exactly one SELECT (or WITH … SELECT, UNION) statement, found {kinds}"
        )
    return statements[0]


def _upstream(query: exp.Query) -> tuple[str, ...]:
    """Tables the query reads: scope sources that are tables, so CTE names (even shadowing ones) are not."""
    query = normalize_identifiers(query.copy(), dialect=DIALECT)
    return tuple(
        sorted(
            {
                exp.table_name(source)
                for scope in traverse_scope(query)
                for source in scope.sources.values()
                if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier)
            }
        )
    )


def _check_known(file: str, upstream: tuple[str, ...], known: Collection[str]) -> None:
    if unknown := [t for t in upstream if t not in known]:
        raise TransformError(
            f"{file}: reads unknown table(s) {', '.join(unknown)}; known tables and transforms: "
            f"{', '.join(sorted(known)) or 'none'}. Fix the name, configure the table or add the transform"
        )


def _resolve(
    name: str, file: str, sql: str, query: exp.Query, schemas: Schemas
) -> tuple[Transform, dict[str, str]]:
    """The Transform and its output schema (type names as Spark spells them; "string" where unknown)."""
    for projection in query.selects:  # the first SELECT of a UNION names the columns
        if not (isinstance(projection, (exp.Alias, exp.Column, exp.Dot)) or projection.is_star):
            raise TransformError(
                f"{file}: output column {projection.sql(DIALECT)!r} has no name; "
                f"add an alias: {projection.sql(DIALECT)} AS some_name"
            )
    schema = MappingSchema(schemas, dialect=DIALECT)
    try:
        qualified = qualify(
            query.copy(), dialect=DIALECT, schema=schema, validate_qualify_columns=True, identify=False
        )
    except OptimizeError as e:
        raise _column_error(file, query, schemas, e) from None
    annotate_types(qualified, schema=schema, dialect=DIALECT)
    selects = qualified.selects
    columns = tuple(s.alias_or_name for s in selects)
    if duplicates := sorted({c for c in columns if columns.count(c) > 1}):
        exprs = [s.unalias().sql(DIALECT) for s in selects if s.alias_or_name in duplicates]
        raise TransformError(
            f"{file}: duplicate output column(s) {', '.join(duplicates)} from {', '.join(exprs)}; "
            "alias them apart"
        )
    nodes = lineage(None, qualified, schema, dialect=DIALECT, scope=build_scope(qualified))
    column_lineage = {
        column: tuple(
            sorted(
                {
                    (n.expression.name, exp.to_column(n.name).name)
                    for n in node.walk()
                    if isinstance(n.expression, exp.Table)
                }
            )
        )
        for column, node in nodes.items()
    }
    types = {
        s.alias_or_name: "string"
        if s.type is None or s.type.is_type(*_UNTYPED)
        else s.type.sql(DIALECT).lower()
        for s in selects
    }
    transform = Transform(name, file, sql, _upstream(query), columns, column_lineage)
    return transform, types


def _column_error(file: str, query: exp.Query, schemas: Schemas, error: OptimizeError) -> TransformError:
    """Find the column qualify rejected and say which tables were in scope and what they hold.

    sqlglot's messages vary by case ("Unknown column: x", "could not be resolved") and do not list
    the tables, so the unqualified query is walked scope by scope to find the first column that no
    source in reach provides (or that more than one provides).
    """
    query = normalize_identifiers(query.copy(), dialect=DIALECT)
    for scope in traverse_scope(query):
        reach = _reach(scope)
        for column in scope.columns:
            if problem := _unresolved(column, reach, schemas):
                line, col = column.this.meta_get("line"), column.this.meta_get("col")
                where = f"line {line}, column {col}: " if line else ""
                in_reach = {alias: src for sources in reversed(reach) for alias, src in sources.items()}
                tables = "; ".join(
                    _describe(a, src, schemas, with_columns=True) for a, src in in_reach.items()
                )
                return TransformError(
                    f"{file}: {where}column {column.sql(DIALECT)!r} {problem}. Tables in scope: "
                    f"{tables or 'none'}. Fix the column name, or qualify it with its table"
                )
    return TransformError(f"{file}: {error}. Tables read: {', '.join(_upstream(query)) or 'none'}")


def _reach(scope: Scope) -> list[Sources]:
    """What a column may name, innermost first: its scope's sources, then (a subquery may correlate)
    the enclosing scopes'."""
    levels: list[Sources] = []
    outer: Scope | None = scope
    while outer is not None:
        levels.append(dict(outer.sources))
        outer = outer.parent if outer.is_subquery else None
    return levels


def _unresolved(column: exp.Column, reach: list[Sources], schemas: Schemas) -> str:
    """Why no source in reach provides the column, or "" when one does (a SELECT alias counts)."""
    for sources in reach:
        if column.table:
            if column.table not in sources:
                continue
            names = _columns(sources[column.table], schemas)
            if names is None or column.name in names:
                return ""
            return f"does not exist in {_describe(column.table, sources[column.table], schemas)}"
        having = [
            a for a, s in sources.items() if (names := _columns(s, schemas)) is None or column.name in names
        ]
        if len(having) > 1:
            return "is ambiguous: it is in " + " and ".join(_describe(a, sources[a], schemas) for a in having)
        if having:
            return ""
    if column.table:
        return f"names {column.table!r}, which is no table or alias in scope"
    select = column.find_ancestor(exp.Select)
    aliases = {p.alias for p in select.selects if isinstance(p, exp.Alias)} if select else set()
    return "" if column.name in aliases else "does not exist in any table in scope"


def _columns(source: exp.Table | Scope, schemas: Schemas) -> list[str] | None:
    """Column names a source provides; None when unknown (a star not expanded, a table function)."""
    if isinstance(source, exp.Table):
        return list(schemas[source.name]) if source.name in schemas else None
    names = getattr(source.expression, "named_selects", None)
    return None if names is None or "*" in names else names


def _describe(alias: str, source: exp.Table | Scope, schemas: Schemas, with_columns: bool = False) -> str:
    if isinstance(source, exp.Table):
        label = source.name if source.name == alias else f"{source.name} AS {alias}"
    else:
        label = f"CTE {alias}" if source.is_cte else f"subquery {alias}"
    names = _columns(source, schemas) if with_columns else None
    return f"{label} ({', '.join(names)})" if names is not None else label
