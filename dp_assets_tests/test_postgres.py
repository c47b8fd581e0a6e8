"""dump from a real PostgreSQL: per-day extracts (date column, condition, splits) or daily snapshots,
streamed into the raw zone with the same manifest as file drops, then loaded like any delivery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from dp_assets.config.loader import load_config_from
from dp_assets.definitions import build_definitions
from dp_assets.lake import Lake
from dp_assets_tests.helpers import (
    check_results,
    checks_by_asset,
    materializations,
    materialize_keys,
    materialize_range,
    range_tags,
    read_table,
)

CONFIG = """
[general]
pipeline_name = "shop"
input_path = "landing"
output_path = "lake"
start_date = 2024-03-01
end_date = 2024-03-31

[tables.orders]
partition_column = "order_date"
key = ["id"]
quarantine = {{ max_ratio = 0.5 }}
columns = [
  {{ name = "id", type = "int", nullable = false }},
  {{ name = "placed_at", type = "timestamp" }},
  {{ name = "amount", type = "double" }},
  {{ name = "status", type = "string" }},
]

[tables.orders.source]
kind = "postgres"
dsn_env = "DP_TEST_SHOP_DSN"
schema = "{schema}"
table = "orders"
date_column = "placed_at"
condition = "status <> 'test'"
split_by = "id"
splits = 2

[tables.stores]
partition_column = "snapshot_date"
key = ["store_id"]
source = {{ kind = "postgres", dsn_env = "DP_TEST_SHOP_DSN", schema = "{schema}", table = "stores" }}
columns = [
  {{ name = "store_id", type = "int", nullable = false }},
  {{ name = "city", type = "string" }},
]
"""

ORDERS = [  # id, placed_at, amount (text upstream: one value is not a number), status
    (1, "2024-03-01 08:00:00", "10.5", "paid"),
    (2, "2024-03-01 09:30:00", "n/a", "paid"),  # quarantined: not a valid double
    (3, "2024-03-01 12:00:00", "7", "test"),  # excluded by the condition
    (4, "2024-03-01 23:59:59", "1.25", "paid"),
    (7, "2024-03-01 13:00:00", None, "open"),  # NULL stays NULL
    (5, "2024-03-02 00:00:00", "3", "paid"),
    (6, "2024-03-02 10:00:00", "4", "paid"),
    (8, "2024-03-03 10:00:00", "99", "paid"),  # outside the range
]


@pytest.fixture
def shop(pg_schema, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, isolated_home: Path):
    """A fresh schema with orders and stores, and a config reading it through DP_TEST_SHOP_DSN.
    The DSN carries a password (ignored by the test server's trust auth) that must never leak."""
    info = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    password = info.get("password") or "s3cr3t-pw"
    dsn = psycopg.conninfo.make_conninfo(postgres_dsn, password=password)
    pg_schema.execute("CREATE TABLE {s}.orders (id integer, placed_at timestamp, amount text, status text)")
    pg_schema.execute("INSERT INTO {s}.orders VALUES (%s, %s, %s, %s)", ORDERS)
    pg_schema.execute("CREATE TABLE {s}.stores (store_id integer, city text)")
    pg_schema.execute("INSERT INTO {s}.stores VALUES (1, 'Leeds'), (2, 'York')")
    monkeypatch.setenv("DP_TEST_SHOP_DSN", dsn)
    path = isolated_home / "shop.toml"
    path.write_text(CONFIG.format(schema=pg_schema.name))
    return load_config_from(str(path), home=isolated_home), dsn, password, pg_schema


def test_extracts_each_day_and_loads_it_like_a_delivery(shop) -> None:
    loaded, dsn, password, pg_schema = shop
    schema = pg_schema.name
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(
        loaded, "2024-03-01", "2024-03-02", instance=instance, tables=("orders", "stores")
    )
    assert result.success
    assert all(checks_by_asset(result).values())
    lake = Lake(loaded)

    manifest = json.loads(Path(lake.uri(lake.manifest_path("orders", "2024-03-01"))).read_text())
    assert manifest["rows"] == 4  # ids 1, 2, 4, 7: the 'test' row is filtered, day 2 is not here
    assert [f["file"] for f in manifest["files"]] == [
        "orders_2024-03-01_part00.csv",
        "orders_2024-03-01_part01.csv",
    ]
    for f in manifest["files"]:
        raw = Path(lake.uri(lake.raw_prefix("orders", "2024-03-01"))) / f["file"]
        assert f["sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()
        assert f["source"].startswith("postgresql://") and f["source"].endswith(f"/{schema}.orders")
        assert "'2024-03-01'::date" in f["query"] and "status <> 'test'" in f["query"]

    orders = read_table(Path(loaded.output_path) / "orders").to_table()
    by_id = {r["id"]: r for r in orders.to_pylist()}
    assert sorted(by_id) == [1, 4, 5, 6, 7]
    assert by_id[1]["amount"] == 10.5 and by_id[7]["amount"] is None
    assert str(by_id[4]["order_date"]) == "2024-03-01" and str(by_id[5]["order_date"]) == "2024-03-02"
    quarantine = read_table(Path(loaded.output_path) / "_quarantine" / "orders").to_table().to_pylist()
    assert [(q["id"], q["_reject_reason"]) for q in quarantine] == [("2", "amount: not a valid double")]
    rows_in = {m.partition: m.metadata["rows_in"].value for m in materializations(result, "orders")}
    assert rows_in == {"2024-03-01": 4, "2024-03-02": 2}  # in = loaded + quarantined, per day

    stores = read_table(Path(loaded.output_path) / "stores").to_table()
    assert stores.num_rows == 4  # the whole table, snapshotted for each day; no duplicate-delivery warning
    assert check_results(result)["no_duplicate_delivery"] is True

    logged = json.dumps([str(e) for e in instance.all_logs(result.run_id)])
    logged += json.dumps(manifest)
    assert dsn not in logged and password not in logged


def _dump_failure(loaded) -> str:
    defs = build_definitions(loaded)
    result = materialize_keys(
        defs,
        ["raw", "orders"],
        resources=defs.resources,
        tags=range_tags("2024-03-01", "2024-03-01"),
        raise_on_error=False,
    )
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failure.step_failure_data.user_failure_data.description or failure.step_failure_data.error.message


def test_unset_dsn_names_the_variable(shop, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, *_ = shop
    monkeypatch.delenv("DP_TEST_SHOP_DSN")
    message = _dump_failure(loaded)
    assert "table 'orders'" in message and "DP_TEST_SHOP_DSN, which is not set" in message


def test_missing_upstream_table_is_named(shop) -> None:
    loaded, _, password, pg_schema = shop
    pg_schema.execute("DROP TABLE {s}.orders")
    message = _dump_failure(loaded)
    assert f"{pg_schema.name}.orders does not exist" in message and "partition 2024-03-01" in message
    assert password not in message
