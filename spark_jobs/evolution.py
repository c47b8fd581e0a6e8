"""What a load types, decided from the dump's manifests before anything is typed: the days that are
ready, their staged rows, and the columns (the design's, then those schema evolution adds).

Standard library only: the orchestrator decides it before a run today, and the job can decide it
after dumping in the same application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spark_jobs.contract import ColumnSpec, LoadRequest, LoadSpec
from spark_jobs.dumping.layout import TableLayout
from spark_jobs.storage import Store, read_json_if_exists


class LoadRefused(ValueError):
    """A table's days cannot load as they are; the message says why and what to do."""


class SchemaEvolutionRefused(LoadRefused):
    pass


class DeliveryIsolated(LoadRefused):
    pass


class NotDumped(LoadRefused):
    pass


def ready_manifests(
    table: str, days: list[str], read: Callable[[str], dict[str, Any] | None], where: Callable[[str], str]
) -> dict[str, dict[str, Any]]:
    """The days' manifests (``read(day)``), refusing a day the dump has not written or isolated
    (``where(day)``: the manifest's location, for the message)."""
    manifests = {}
    for day in days:
        manifest = read(day)
        if manifest is None:
            raise NotDumped(
                f"table {table!r}, partition {day}: no raw manifest at {where(day)}; "
                f"materialize raw/{table} for this partition first"
            )
        if manifest.get("isolated"):
            raise DeliveryIsolated(
                f"table {table!r}, partition {day}: the dump isolated this delivery to "
                f"{manifest['isolated']['location']} (sensitive data in columns not declared sensitive: "
                f"{', '.join(manifest['isolated']['columns'])}); nothing was staged, so it cannot load. "
                "Declare the columns sensitive, or get a redelivery, then re-run the dump."
            )
        manifests[day] = manifest
    return manifests


def staged_days(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Days whose delivery staged any rows (or columns: an empty file with a header)."""
    return [d for d, m in manifests.items() if any(f.get("columns") or f.get("rows") for f in m["files"])]


def evolve(
    table: str,
    design: dict[str, str],
    mode: str,
    established: list[dict[str, Any]] | None,
    manifests: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The columns to load: ``design`` (name -> type), then columns added by evolution (as strings),
    given the table's ``established`` columns and evolution ``mode`` (add, ignore, fail)."""
    before = (
        established
        if established
        else [{"name": n, "type": t, "origin": "design"} for n, t in design.items()]
    )
    for col in before:
        if col["name"] in design and col["origin"] == "design" and col["type"] != design[col["name"]]:
            raise SchemaEvolutionRefused(
                f"table {table!r}: the design changes column {col['name']!r} from {col['type']} to "
                f"{design[col['name']]}; published partitions hold {col['type']}. Revert the type, or "
                "reload the table into a new name."
            )
    added = [c for c in before if c["origin"] == "added" and c["name"] not in design]
    known = set(design) | {c["name"] for c in added}
    seen: dict[str, list[str]] = {}
    for day, manifest in manifests.items():
        for f in manifest["files"]:
            if not f.get("header_matches", True):
                continue  # a header that matches nothing (wrong delimiter) is no schema change
            for col in f.get("columns", []):
                if col not in known:
                    seen.setdefault(col, []).append(f"{day}/{f['file']}")
    if seen and mode == "fail":
        listing = "; ".join(f"{c} in {', '.join(files[:3])}" for c, files in seen.items())
        raise SchemaEvolutionRefused(
            f'table {table!r}: delivery has columns the design lacks ({listing}) and evolution = "fail". '
            'Declare them in the design, or set evolution = "add" or "ignore".'
        )
    new = [{"name": c, "type": "string", "origin": "added"} for c in seen] if mode == "add" else []
    after = [{"name": n, "type": t, "origin": "design"} for n, t in design.items()] + added + new
    return {
        "before": before,
        "after": after,
        "added": [c["name"] for c in new],
        "ignored": sorted(seen) if mode == "ignore" else [],
    }


def manifests_in(
    store: Store, request: LoadRequest, days: list[str], dumped: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The days' manifests of a load's table in ``store`` (its lake), or as this run's dump returned
    them (``dumped``: what it wrote there, not read back), refused as ``ready_manifests`` says."""
    layout = TableLayout(request["table"], request["partition_column"], "")

    def stored(day: str) -> dict[str, Any] | None:
        return read_json_if_exists(store, layout.manifest_path(day))

    return ready_manifests(
        request["table"],
        days,
        dumped.get if dumped is not None else stored,
        lambda day: store.uri(layout.manifest_path(day)),
    )


def completed(request: LoadRequest, manifests: dict[str, dict[str, Any]]) -> tuple[LoadSpec, dict[str, Any]]:
    """The load as the job runs it, and the schema evolution decided: the columns (the design's
    with their constraints, then evolved ones as nullable strings), the days that staged rows and
    each day's rows in."""
    request_design = {c["name"]: c for c in request["design"]}
    schema = evolve(
        request["table"],
        {n: c["type"] for n, c in request_design.items()},
        request["evolution"],
        request["established"],
        manifests,
    )
    columns: list[ColumnSpec] = [
        request_design.get(c["name"])
        or {
            "name": c["name"],
            "type": c["type"],
            "nullable": True,
            "description": "evolved: added from a delivery",
        }
        for c in schema["after"]
    ]
    spec: LoadSpec = {
        **request,
        "columns": columns,
        "staged_days": staged_days(manifests),
        "manifest_rows": {d: m["rows"] for d, m in manifests.items()},
    }
    return spec, schema
