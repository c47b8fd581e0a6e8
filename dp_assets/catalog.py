"""Catalog metadata from the config, shaped for the Dagster UI: owners, tags, glossary terms, schema.

Glossary terms (DataHub's `Classification.Sensitive`, `PII.Email`, ...) become tags in a `glossary/`
namespace, so the UI shows them and asset selection can filter on them (`tag:glossary/PII.Email`).
Dagster tag keys allow at most 63 of ``[A-Za-z0-9_.-]`` per section: other characters become ``_``
and a longer term is cut and suffixed with a digest, so distinct terms stay distinct tags. The terms
themselves are kept verbatim in the `glossary_terms` metadata.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import dagster as dg

from dp_assets.config.model import LOAD_DATE, ROW_HASH, SENSITIVE_TERM, Column, Table

GLOSSARY_NAMESPACE = "glossary"
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def glossary_tag_key(term: str) -> str:
    """`Classification.Sensitive` -> `glossary/Classification.Sensitive`; always a valid tag key."""
    safe = _TAG_UNSAFE.sub("_", term.strip()).strip("_") or "term"
    if len(safe) > 63:
        safe = f"{safe[:54]}-{hashlib.sha256(term.encode()).hexdigest()[:8]}"
    return f"{GLOSSARY_NAMESPACE}/{safe}"


def column_terms(column: Column) -> list[str]:
    """A column's glossary terms; a column declared sensitive always carries Classification.Sensitive."""
    terms = list(column.glossary_terms)
    if column.sensitive and SENSITIVE_TERM not in terms:
        terms.append(SENSITIVE_TERM)
    return terms


def column_tags(column: Column) -> dict[str, str]:
    return {**column.tags, **{glossary_tag_key(t): "" for t in column_terms(column)}}


def asset_tags(table: Table) -> dict[str, str]:
    """Tags for the table's dump and load assets: its own tags and its glossary terms."""
    return {**table.tags, **{glossary_tag_key(t): "" for t in table.glossary_terms}}


def catalog_metadata(table: Table) -> dict[str, Any]:
    """Definition metadata the UI shows on the asset page (only what the config sets)."""
    by_column = {c.name: column_terms(c) for c in table.columns if column_terms(c)}
    metadata: dict[str, Any] = {}
    if table.glossary_terms:
        metadata["glossary_terms"] = dg.MetadataValue.json(table.glossary_terms)
    if by_column:
        metadata["column_glossary_terms"] = dg.MetadataValue.json(by_column)
    sensitive = [c.name for c in table.columns if c.sensitive]
    if sensitive:
        metadata["sensitive_columns"] = dg.MetadataValue.json(sensitive)
    return metadata


def _design_column(table: Table, column: Column) -> dg.TableColumn:
    key_part = column.name in table.key
    return dg.TableColumn(
        column.name,
        column.type,
        description=column.description or None,
        constraints=dg.TableColumnConstraints(
            nullable=column.nullable and not key_part,
            unique=table.key == [column.name],
            other=[f"part of the key ({', '.join(table.key)})"] if key_part and len(table.key) > 1 else [],
        ),
        tags=column_tags(column),
    )


def _added_columns(table: Table) -> list[dg.TableColumn]:
    return [
        dg.TableColumn(ROW_HASH, "string", description="sha256 of the canonical row, for change detection"),
        dg.TableColumn(LOAD_DATE, "date", description="the day the row was loaded"),
        dg.TableColumn(
            table.partition_column,
            "date",
            description="delivery day",
            constraints=dg.TableColumnConstraints(nullable=False),
        ),
    ]


def table_schema(table: Table) -> dg.TableSchema:
    """The published table as designed: descriptions, constraints and tags per column."""
    constraints = dg.TableConstraints(other=[f"unique key: {', '.join(table.key)}"]) if table.key else None
    return dg.TableSchema(
        [*(_design_column(table, c) for c in table.columns), *_added_columns(table)],
        constraints=constraints,
    )


def enrich_schema(reported: Any, table: Table) -> dg.TableSchema:
    """The schema a load reported (names and types as written) with the design's descriptions,
    constraints and tags, so the latest materialization shows what the definition shows."""
    schema = reported.schema if isinstance(reported, dg.TableSchemaMetadataValue) else reported
    designed = {c.name: c for c in table_schema(table).columns}
    columns = []
    for col in schema.columns:
        known = designed.get(col.name)
        columns.append(
            dg.TableColumn(
                col.name,
                col.type,
                description=(known.description if known else None) or col.description,
                constraints=known.constraints if known else col.constraints,
                tags={**(known.tags if known else {}), **col.tags},
            )
        )
    return dg.TableSchema(columns, constraints=table_schema(table).constraints)
