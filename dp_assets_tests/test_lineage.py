"""OpenLineage: with an endpoint configured, each dump and load materialization POSTs a RunEvent
carrying the table's owners, tags, glossary terms and schema; a failing endpoint only warns.
No Spark: the load runs on a stand-in launcher that reports what the Spark job would."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from dp_assets.config.loader import LoadedConfig, load_config_from
from dp_assets.definitions import build_definitions
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets.launchers.base import SparkLauncher
from dp_assets_tests.conftest import packaged_text
from dp_assets_tests.helpers import dumps_as_the_job_does, materialize_keys
from spark_jobs.contract import LOAD_CHECKS, OUTCOME_MESSAGE, SCHEMA_EVOLUTION

# Dagster's pydantic compatibility layer warns about the stand-in launcher class; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")

DAY = "2013-01-02"
URL_ENV = "DP_TEST_OPENLINEAGE_URL"


class Endpoint:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.paths: list[str] = []
        self.status = 201


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    received = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.paths.append(self.path)
            received.events.append(json.loads(body))
            self.send_response(received.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{server.server_port}/api/v1/lineage")
    yield received
    server.shutdown()
    thread.join()


def lake_with_lineage(home: Path) -> LoadedConfig:
    cfg = home / "config.toml"
    cfg.write_text(packaged_text() + f'\n[openlineage]\nurl_env = "{URL_ENV}"\nnamespace = "dp-test"\n')
    loaded = load_config_from(str(cfg), home=home)
    write_flight_deliveries(Lake(loaded), *([dt.date.fromisoformat(DAY)] * 2))
    return loaded


class ReportsLikeSpark(SparkLauncher):
    """What spark_jobs/run_pipeline.py does and reports through Pipes for each dump and load, without
    starting Spark."""

    def run_job(self, context, script, extras):  # type: ignore[no-untyped-def]
        yield from dumps_as_the_job_does(extras)
        for load in extras["loads"]:
            added = [("row_hash", "string"), ("load_date", "date"), (load["partition_column"], "date")]
            columns = [(c["name"], c["type"]) for c in load["design"]] + added
            design = [{"name": c["name"], "type": c["type"], "origin": "design"} for c in load["design"]]
            evolution = {"before": design, "after": design, "added": [], "ignored": []}
            schema = dg.TableSchema([dg.TableColumn(n, t) for n, t in columns])
            key = dg.AssetKey(load["table"])
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "dagster/row_count": dg.MetadataValue.int(943),
                    "dagster/column_schema": dg.MetadataValue.table_schema(schema),
                    SCHEMA_EVOLUTION: dg.MetadataValue.json(evolution),
                },
            )
            yield from (dg.AssetCheckResult(asset_key=key, check_name=c, passed=True) for c in LOAD_CHECKS)
        yield {OUTCOME_MESSAGE: {"failed": {}, "not_run": {}}}


def run(loaded: LoadedConfig, keys: list) -> tuple[dg.ExecuteInProcessResult, str]:
    """The run's result and every log message it wrote."""
    defs = build_definitions(loaded)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_keys(
        defs,
        *keys,
        resources={**defs.resources, "spark": ReportsLikeSpark()},
        instance=instance,
        partition_key=DAY,
    )
    return result, "\n".join(e.user_message for e in instance.all_logs(result.run_id))


def test_each_materialization_posts_a_run_event_with_catalog_metadata(
    isolated_home: Path, endpoint: Endpoint
) -> None:
    loaded = lake_with_lineage(isolated_home)
    result, _ = run(loaded, [["raw", "flights"], "flights"])
    assert result.success
    assert endpoint.paths == ["/api/v1/lineage", "/api/v1/lineage"]
    dump, load = endpoint.events
    for event, job in ((dump, "raw.flights"), (load, "flights")):
        assert event["eventType"] == "COMPLETE" and event["job"] == {
            "namespace": "dp-test",
            "name": job,
            "facets": {},
        }
        assert event["schemaURL"].endswith("/OpenLineage.json#/$defs/RunEvent")
        uuid.UUID(event["run"]["runId"])
        facets = event["run"]["facets"]
        assert facets["parent"]["run"]["runId"] == result.run_id
        assert facets["nominalTime"]["nominalStartTime"].startswith(DAY)
    assert dump["run"]["runId"] != load["run"]["runId"]

    (raw_in,) = dump["inputs"]
    assert raw_in == {"namespace": "file", "name": str(isolated_home / "landing" / "flights"), "facets": {}}
    assert (
        load["inputs"][0]["name"]
        == dump["outputs"][0]["name"]
        == str(isolated_home / "lake" / "_raw" / "flights")
    )

    (table,) = load["outputs"]
    assert table["name"] == str(isolated_home / "lake" / "flights")
    assert table["outputFacets"]["outputStatistics"]["rowCount"] == 943
    f = table["facets"]
    assert f["ownership"]["owners"] == [
        {"name": "flight-data@nycflights13.example"},
        {"name": "team:flight-ops"},
    ]
    assert f["documentation"]["description"].startswith("Every departure from NYC airports")
    fields = {x["name"]: x for x in f["schema"]["fields"]}
    assert fields["tailnum"]["description"].startswith("plane tail number") and "flight_date" in fields
    tags = {(t["key"], t["value"], t.get("field")) for t in f["tags"]["tags"]}
    assert {
        ("domain", "aviation", None),
        ("glossary", "Aviation.Flight", None),
        ("glossary", "Classification.Sensitive", "tailnum"),
        ("classification", "sensitive", "tailnum"),
        ("pii", "indirect", "tailnum"),
    } <= tags
    assert all(t["source"] == "CONFIG" for t in f["tags"]["tags"])
    for facet in (*f.values(), *table["outputFacets"].values()):
        assert facet["_producer"] and facet["_schemaURL"].startswith("https://openlineage.io/spec/facets/")


def test_failing_or_unset_endpoint_warns_and_the_dump_succeeds(
    isolated_home: Path, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = lake_with_lineage(isolated_home)
    url = os.environ[URL_ENV]
    endpoint.status = 500
    result, logs = run(loaded, [["raw", "flights"]])
    assert result.success and len(endpoint.events) == 1
    assert f"could not send the raw.flights run event to the endpoint in {URL_ENV}: HTTP 500" in logs
    assert url not in logs  # the URL may carry a token
    monkeypatch.delenv(URL_ENV)
    result, logs = run(loaded, [["raw", "flights"]])
    assert result.success and len(endpoint.events) == 1
    assert f"OpenLineage: {URL_ENV} is not set; no lineage event sent for raw.flights" in logs


def test_no_endpoint_configured_sends_nothing(isolated_home: Path, endpoint: Endpoint) -> None:
    loaded = load_config_from("packaged", home=isolated_home)
    write_flight_deliveries(Lake(loaded), *([dt.date.fromisoformat(DAY)] * 2))
    assert run(loaded, [["raw", "flights"]])[0].success
    assert endpoint.events == []
