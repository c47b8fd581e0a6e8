"""SQL transforms: upstream tables, output columns and lineage parsed from the SQL; broken files named."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dp_assets.transforms.sql import (
    TransformError,
    _parse,
    _resolve,
    discover,
    parse_transform,
    topological_order,
)

SCHEMAS = {
    "flights": {
        "flight_date": "date",
        "carrier": "string",
        "dep_delay": "double",
        "arr_delay": "double",
        "origin": "string",
    },
    "airlines": {"snapshot_date": "date", "carrier": "string", "name": "string"},
}

DAILY = """
WITH latest AS (
    SELECT carrier, name FROM airlines
    WHERE snapshot_date = (SELECT max(snapshot_date) FROM airlines)
)
SELECT f.flight_date, f.carrier, l.name AS carrier_name,
       avg(f.dep_delay) AS avg_dep_delay, count(*) AS flights
FROM flights f
LEFT JOIN latest l ON f.carrier = l.carrier
GROUP BY f.flight_date, f.carrier, l.name
"""
WORST = """
SELECT d.flight_date, max(d.avg_dep_delay) AS worst_avg_dep_delay, sum(d.flights) AS flights
FROM daily_carrier_delays d
GROUP BY d.flight_date
"""
FILES = {
    "transforms/worst_days.sql": WORST,
    "transforms/daily_carrier_delays.sql": DAILY,
    "transforms/worst_week.sql": "SELECT * FROM worst_days WHERE flight_date >= date_sub(current_date(), 7)",
}


def error(sql: str, file: str = "transforms/t.sql") -> str:
    with pytest.raises(TransformError) as e:
        parse_transform("t", file, sql, SCHEMAS)
    return str(e.value)


def discover_error(files: dict[str, str]) -> str:
    with pytest.raises(TransformError) as e:
        discover(files, SCHEMAS)
    return str(e.value)


def test_join_with_cte_reads_both_tables_but_not_the_cte() -> None:
    t = parse_transform("daily_carrier_delays", "transforms/daily_carrier_delays.sql", DAILY, SCHEMAS)
    assert (t.name, t.file, t.sql) == ("daily_carrier_delays", "transforms/daily_carrier_delays.sql", DAILY)
    assert t.upstream == ("airlines", "flights")  # sorted; `latest` is a CTE
    assert t.columns == ("flight_date", "carrier", "carrier_name", "avg_dep_delay", "flights")


def test_lineage_follows_aliases_and_ctes_to_upstream_columns() -> None:
    t = parse_transform("daily_carrier_delays", "d.sql", DAILY, SCHEMAS)
    assert t.lineage == {
        "flight_date": (("flights", "flight_date"),),
        "carrier": (("flights", "carrier"),),
        "carrier_name": (("airlines", "name"),),  # through the CTE `latest`
        "avg_dep_delay": (("flights", "dep_delay"),),
        "flights": (),  # count(*) reads no column
    }


def test_lineage_of_an_expression_and_a_union_lists_every_source_column_sorted() -> None:
    sql = "SELECT arr_delay - dep_delay AS gained FROM flights UNION ALL SELECT 0.0 AS gained FROM airlines"
    assert parse_transform("g", "g.sql", sql, SCHEMAS).lineage == {
        "gained": (("flights", "arr_delay"), ("flights", "dep_delay"))
    }


def test_cte_shadowing_a_table_name_is_not_upstream() -> None:
    sql = "WITH airlines AS (SELECT carrier FROM flights) SELECT a.carrier FROM airlines a"
    t = parse_transform("t", "t.sql", sql, SCHEMAS)
    assert t.upstream == ("flights",)
    assert t.lineage == {"carrier": (("flights", "carrier"),)}


def test_discover_resolves_transforms_reading_transforms_with_inferred_columns() -> None:
    found = discover(FILES, SCHEMAS)
    assert list(found) == ["daily_carrier_delays", "worst_days", "worst_week"]  # dependency order
    worst = found["worst_days"]
    assert worst.file == "transforms/worst_days.sql"
    assert worst.upstream == ("daily_carrier_delays",)
    assert worst.lineage["worst_avg_dep_delay"] == (("daily_carrier_delays", "avg_dep_delay"),)
    # `SELECT *` over a transform expands to that transform's output columns.
    week = found["worst_week"]
    assert week.upstream == ("worst_days",)
    assert week.columns == ("flight_date", "worst_avg_dep_delay", "flights")
    assert week.lineage["flights"] == (("worst_days", "flights"),)


def test_a_column_missing_from_an_upstream_transform_is_reported_against_it() -> None:
    files = {**FILES, "transforms/bad.sql": "SELECT w.dep_delay FROM worst_days w"}
    message = discover_error(files)
    assert message.startswith("transforms/bad.sql: ")
    assert "'w.dep_delay' does not exist in worst_days AS w" in message
    assert "worst_days AS w (flight_date, worst_avg_dep_delay, flights)" in message


def test_output_types_for_readers_are_inferred_else_string() -> None:
    # discover gives each transform's readers this schema; Transform itself carries no types.
    sql = DAILY.replace("count(*) AS flights", "count(*) AS flights, my_udf(f.origin) AS odd")
    _, types = _resolve("d", "d.sql", sql, _parse("d.sql", sql), SCHEMAS)
    assert types == {
        "flight_date": "date",
        "carrier": "string",
        "carrier_name": "string",
        "avg_dep_delay": "double",
        "flights": "bigint",
        "odd": "string",  # an unknown function: no type to infer
    }


def test_topological_order_puts_readers_after_what_they_read() -> None:
    found = discover(FILES, SCHEMAS)
    reversed_input = dict(reversed(list(found.items())))
    order = topological_order(reversed_input)
    assert order == ["daily_carrier_delays", "worst_days", "worst_week"]
    independent = {**found, "a_first": parse_transform("a_first", "a.sql", "SELECT 1 AS x", SCHEMAS)}
    assert topological_order(independent)[0] == "a_first"  # ties by name, so the order is stable


def test_syntax_error_names_file_line_and_column() -> None:
    message = error("SELECT carrier\nFROM flights\nWHERE (")
    assert message.startswith("transforms/t.sql: SQL syntax error at line 3, column 7")
    assert "missing" in message  # sqlglot's description


def test_unclosed_quote_names_file() -> None:
    assert error("SELECT 'abc FROM flights").startswith("transforms/t.sql: SQL syntax error")


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("SELECT 1 AS a; SELECT 2 AS b", "found SELECT, SELECT"),
        ("INSERT INTO flights SELECT * FROM flights", "found INSERT"),
        ("CREATE TABLE x AS SELECT 1 AS a", "found CREATE"),
        ("-- nothing here\n", "found nothing"),
    ],
)
def test_not_exactly_one_select(sql: str, found: str) -> None:
    message = error(sql)
    assert message.startswith("transforms/t.sql: a transform is exactly one SELECT")
    assert found in message


def test_unknown_table_names_file_table_and_known_names() -> None:
    message = error("SELECT f.carrier FROM flightz f")
    assert "transforms/t.sql" in message
    assert "unknown table(s) flightz" in message
    assert "known tables and transforms: airlines, flights" in message


def test_unknown_table_in_discover_lists_transforms_too() -> None:
    message = discover_error({**FILES, "transforms/x.sql": "SELECT d.carrier FROM daily_delays d"})
    assert "transforms/x.sql" in message
    assert "daily_delays" in message
    assert "airlines, daily_carrier_delays, flights, worst_days, worst_week" in message


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT f.dep_dly FROM flights f",
            "line 1, column 16: column 'f.dep_dly' does not exist in flights AS f",
        ),
        ("SELECT dep_dly AS d FROM flights", "column 'dep_dly' does not exist in any table in scope"),
        (
            "SELECT f.carrier FROM flights f WHERE f.nope > 0",
            "column 'f.nope' does not exist in flights AS f",
        ),
        (
            "SELECT x.carrier FROM flights f",
            "column 'x.carrier' names 'x', which is no table or alias in scope",
        ),
        (
            "SELECT carrier FROM flights f JOIN airlines a ON f.carrier = a.carrier",
            "column 'carrier' is ambiguous: it is in flights AS f and airlines AS a",
        ),
        (
            "WITH c AS (SELECT carrier FROM flights) SELECT c.origin FROM c",
            "column 'c.origin' does not exist in CTE c",
        ),
    ],
)
def test_unknown_column_names_file_column_and_tables_in_scope(sql: str, expected: str) -> None:
    message = error(sql)
    assert message.startswith("transforms/t.sql: ")
    assert expected in message
    assert "Tables in scope: " in message


def test_unknown_column_lists_the_columns_of_the_tables_in_scope() -> None:
    message = error("SELECT f.dep_dly FROM flights f")
    assert "Tables in scope: flights AS f (flight_date, carrier, dep_delay, arr_delay, origin)" in message


def test_unknown_column_in_correlated_subquery_lists_outer_tables() -> None:
    sql = "SELECT f.carrier FROM flights f WHERE EXISTS (SELECT 1 FROM airlines a WHERE a.carrier = f.carier)"
    message = error(sql)
    assert "column 'f.carier' does not exist in flights AS f" in message
    assert "flights AS f (" in message
    assert "airlines AS a (" in message


def test_dependency_cycle_names_files_in_order() -> None:
    files = {
        "a.sql": "SELECT b.x FROM b",
        "b.sql": "SELECT c.x FROM c",
        "c.sql": "SELECT a.x FROM a JOIN flights f ON a.x = f.carrier",
    }
    assert "a.sql -> b.sql -> c.sql -> a.sql" in discover_error(files)
    assert "a.sql -> a.sql" in discover_error({"a.sql": "SELECT * FROM a"})


def test_topological_order_reports_cycles_too() -> None:
    a, b = (parse_transform(n, f"{n}.sql", "SELECT 1 AS x", SCHEMAS) for n in "ab")
    loop = {"a": replace(a, upstream=("b",)), "b": replace(b, upstream=("a", "flights"))}
    with pytest.raises(TransformError, match=r"a\.sql -> b\.sql -> a\.sql"):
        topological_order(loop)


def test_transform_named_like_a_configured_table() -> None:
    message = discover_error({"transforms/flights.sql": "SELECT f.carrier FROM airlines f"})
    assert "transforms/flights.sql" in message
    assert "transform 'flights' is named like configured table 'flights'" in message


def test_two_files_with_the_same_stem() -> None:
    message = discover_error({"x/a.sql": "SELECT 1 AS x", "y/a.sql": "SELECT 2 AS x"})
    assert "x/a.sql and y/a.sql both define transform 'a'" in message


def test_file_stem_must_be_usable_in_sql() -> None:
    assert "Daily-Delays.sql: transform name 'Daily-Delays'" in discover_error(
        {"Daily-Delays.sql": "SELECT 1 AS x"}
    )


@pytest.mark.parametrize(
    ("sql", "expression"),
    [
        ("SELECT carrier, count(*) FROM flights GROUP BY carrier", "COUNT(*)"),
        ("SELECT dep_delay + arr_delay FROM flights", "dep_delay + arr_delay"),
        ("SELECT 1 FROM flights", "1"),
    ],
)
def test_unnamed_output_column_names_file_and_expression(sql: str, expression: str) -> None:
    message = error(sql)
    assert message.startswith(f"transforms/t.sql: output column '{expression}' has no name")
    assert f"add an alias: {expression} AS " in message


def test_only_the_first_select_of_a_union_needs_names() -> None:
    sql = "SELECT carrier AS c FROM flights UNION ALL SELECT upper(name) FROM airlines"
    t = parse_transform("t", "t.sql", sql, SCHEMAS)
    assert t.columns == ("c",)
    assert t.lineage == {"c": (("airlines", "name"), ("flights", "carrier"))}


def test_duplicate_output_columns_name_the_expressions() -> None:
    message = error("SELECT f.carrier, a.carrier FROM flights f JOIN airlines a ON f.carrier = a.carrier")
    assert "transforms/t.sql: duplicate output column(s) carrier from f.carrier, a.carrier" in message
    # A star can produce duplicates too.
    message = error("SELECT * FROM flights f JOIN airlines a ON f.carrier = a.carrier")
    assert "duplicate output column(s) carrier" in message


def test_identifiers_are_normalized_as_spark_resolves_them() -> None:
    t = parse_transform("t", "t.sql", "SELECT F.Carrier AS Code FROM Flights F", SCHEMAS)
    assert (t.upstream, t.columns, t.lineage) == (
        ("flights",),
        ("code",),
        {"code": (("flights", "carrier"),)},
    )
