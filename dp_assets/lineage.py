"""OpenLineage: a RunEvent per materialization of a dump or load asset, when an endpoint is configured.

The events carry what the UI shows: the table's description, schema (with column descriptions),
owners, and tags (the table's and each column's tags, glossary terms, and a `classification =
sensitive` tag on columns declared sensitive). The job is the asset (`raw.flights`, `flights`), the
run a UUID derived from the Dagster run and the asset, with the Dagster run as its parent and the
partition range as its nominal time. Inputs and outputs follow OpenLineage's dataset naming: an S3
location is namespace `s3://<bucket>` and name `<key>`; a local one is namespace `file` and its path.

Emission never fails a materialization: an unset variable or an unreachable endpoint is a warning
naming the variable (the URL may carry a token, so it is never logged).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.request
import uuid
from typing import Any

import dagster as dg

from dp_assets.catalog import column_terms
from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import Table

PRODUCER = "https://github.com/dp-platform/dp/tree/main/dp_assets"
HTTP_TIMEOUT_SECONDS = 10
_SPEC = "https://openlineage.io/spec"
RUN_EVENT = f"{_SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACETS = {
    "schema": "1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "documentation": "1-1-0/DocumentationDatasetFacet.json#/$defs/DocumentationDatasetFacet",
    "ownership": "1-0-1/OwnershipDatasetFacet.json#/$defs/OwnershipDatasetFacet",
    "tags": "1-0-0/TagsDatasetFacet.json#/$defs/TagsDatasetFacet",
    "outputStatistics": (
        "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
    ),
    "parent": "1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet",
    "nominalTime": "1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet",
}


def facet(kind: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{_SPEC}/facets/{_FACETS[kind]}", **fields}


def dataset(uri: str, facets: dict[str, Any] | None = None, **output_facets: Any) -> dict[str, Any]:
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        namespace, name = f"s3://{bucket}", key
    else:
        namespace, name = "file", uri
    out: dict[str, Any] = {"namespace": namespace, "name": name, "facets": facets or {}}
    if output_facets:
        out["outputFacets"] = output_facets
    return out


def table_facets(table: Table, schema: dg.TableSchema | None = None) -> dict[str, Any]:
    """Description, owners, tags and glossary terms of a table, and its schema when given."""
    tags = [{"key": k, "value": v, "source": "CONFIG"} for k, v in table.tags.items()]
    tags += [{"key": "glossary", "value": t, "source": "CONFIG"} for t in table.glossary_terms]
    for c in table.columns:
        tags += [{"key": k, "value": v, "source": "CONFIG", "field": c.name} for k, v in c.tags.items()]
        tags += [
            {"key": "glossary", "value": t, "source": "CONFIG", "field": c.name} for t in column_terms(c)
        ]
        if c.sensitive:
            tags.append({"key": "classification", "value": "sensitive", "source": "CONFIG", "field": c.name})
    facets: dict[str, Any] = {}
    if table.description:
        facets["documentation"] = facet("documentation", description=table.description)
    if schema is not None:
        fields = [
            {"name": c.name, "type": c.type, **({"description": c.description} if c.description else {})}
            for c in schema.columns
        ]
        facets["schema"] = facet("schema", fields=fields)
    if table.owners:
        facets["ownership"] = facet("ownership", owners=[{"name": o} for o in table.owners])
    if tags:
        facets["tags"] = facet("tags", tags=tags)
    return facets


def run_event(
    context: dg.AssetExecutionContext,
    namespace: str,
    job: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    event_type: str = "COMPLETE",
) -> dict[str, Any]:
    run_facets: dict[str, Any] = {
        "parent": facet(
            "parent",
            run={"runId": context.run.run_id},
            job={"namespace": namespace, "name": context.run.job_name},
        )
    }
    if context.has_partition_key or context.has_partition_key_range:
        window = context.partition_time_window
        run_facets["nominalTime"] = facet(
            "nominalTime",
            nominalStartTime=window.start.isoformat(),
            nominalEndTime=window.end.isoformat(),
        )
    run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{context.run.run_id}/{job}")  # one run per job and Dagster run
    return {
        "eventType": event_type,
        "eventTime": dt.datetime.now(dt.UTC).isoformat(),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT,
        "run": {"runId": str(run_id), "facets": run_facets},
        "job": {"namespace": namespace, "name": job, "facets": {}},
        "inputs": inputs,
        "outputs": outputs,
    }


def emit(
    context: dg.AssetExecutionContext,
    loaded: LoadedConfig,
    job: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> bool:
    """POST a COMPLETE RunEvent for this materialization when an endpoint is configured; True if sent."""
    cfg = loaded.config.openlineage
    if cfg.url_env is None:
        return False
    url = os.environ.get(cfg.url_env)
    if not url:
        context.log.warning(f"OpenLineage: {cfg.url_env} is not set; no lineage event sent for {job}")
        return False
    namespace = cfg.namespace or loaded.config.general.pipeline_name
    body = json.dumps(run_event(context, namespace, job, inputs, outputs)).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as e:
        problem = f"HTTP {e.code} {e.reason}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        problem = type(getattr(e, "reason", e)).__name__
    else:
        context.log.info(f"OpenLineage: sent the {job} run event")
        return True
    context.log.warning(
        f"OpenLineage: could not send the {job} run event to the endpoint in {cfg.url_env}: {problem}"
    )
    return False
