"""What a load types, decided from the dump's manifests before anything is typed: the days that are
ready, their staged rows, and the columns (the design's, then those schema evolution adds).

Standard library only: the orchestrator decides it before a run today, and the job can decide it
after dumping in the same application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
    established: dict[str, Any] | None,
    manifests: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The columns to load: ``design`` (name -> type), then columns added by evolution (as strings),
    given the table's ``established`` schema and evolution ``mode`` (add, ignore, fail)."""
    before = (
        established["columns"]
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
