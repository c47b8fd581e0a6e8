"""Sensitive-data discovery, as the dump reports it: the table's scan policy from the config, and
the scans of a run's staged files (``spark_jobs.dumping.scan``) as the blocking check
``no_undeclared_sensitive_data`` (:func:`sensitive_check`) and materialization metadata
(:func:`scan_metadata`): counts per partition, column and identifier, never values.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from dp_assets.config.model import MANAGED_IDENTIFIERS, Governance, Table
from spark_jobs.contract import SENSITIVE_CHECK
from spark_jobs.dumping.scan import MANAGED_PATTERNS, Identifier, ScanPolicy

assert set(MANAGED_PATTERNS) == set(MANAGED_IDENTIFIERS)


def identifiers(governance: Governance) -> list[Identifier]:
    managed = [
        Identifier(name, pattern, governance.severity.get(name, MANAGED_IDENTIFIERS[name]), validate=check)
        for name, (pattern, check) in MANAGED_PATTERNS.items()
    ]
    custom = [
        Identifier(c.name, c.regex, c.severity, keywords=tuple(c.keywords))
        for c in governance.custom_identifiers
    ]
    return managed + custom


def scan_policy_for(table: Table, governance: Governance, hash_key: bytes | None = None) -> ScanPolicy:
    """What the scan looks for in ``table``'s staged files (``governance``'s identifiers) and what it
    does about it."""
    return ScanPolicy(
        identifiers=identifiers(governance),
        declared=frozenset(c.name for c in table.columns if c.sensitive),
        typed=frozenset(c.name for c in table.columns if c.type != "string"),
        action=table.scan.action,
        sample_rows=table.scan.sample_rows,
        hash_key=hash_key,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _describe(findings: list[dict[str, Any]]) -> str:
    """`notes: credit_card (2 rows), us_ssn (1 row); contact: email (1 row)` — counts, never values."""
    by_column: dict[str, list[str]] = {}
    for f in sorted(findings, key=lambda f: (f["column"], f["identifier"])):
        by_column.setdefault(f["column"], []).append(
            f"{f['identifier']} ({f['severity']}, {_plural(f['rows'], 'row')})"
        )
    return "; ".join(f"{c}: {', '.join(ids)}" for c, ids in by_column.items())


def sensitive_check(name: str, table: Table, manifests: dict[str, dict[str, Any]]) -> dg.AssetCheckResult:
    """Fails (ERROR, blocking the load) when a day was isolated; warns on any other undeclared finding."""
    scans = {d: m["scan"] for d, m in manifests.items() if "scan" in m}
    undeclared = {d: [f for f in s["findings"] if not f["declared"]] for d, s in scans.items()}
    undeclared = {d: v for d, v in undeclared.items() if v}
    isolated = {d: m["isolated"] for d, m in manifests.items() if m.get("isolated")}
    protected = {d: s["protected"] for d, s in scans.items() if s["protected"]}
    rows = [
        f"| {d} | {f['column']} | {f['identifier']} | {f['severity']} | {f['rows']} | "
        f"{'yes' if f['declared'] else 'no'} |"
        for d, s in scans.items()
        for f in s["findings"]
    ]
    metadata = {
        "action": table.scan.action,
        "rows_scanned": sum(s["rows_scanned"] for s in scans.values()),
        "findings": dg.MetadataValue.md(
            "| partition | column | identifier | severity | rows | declared sensitive |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows)
            if rows
            else "no findings"
        ),
        "undeclared_by_partition": dg.MetadataValue.json(
            {d: {f"{f['column']}/{f['identifier']}": f["rows"] for f in v} for d, v in undeclared.items()}
        ),
        "isolated": dg.MetadataValue.json(isolated),
        "protected": dg.MetadataValue.json(protected),
    }
    if isolated:
        days = ", ".join(isolated)
        detail = " ".join(
            f"Partition {d}: {_describe([f for f in undeclared[d] if f['severity'] == 'high'])}; "
            f"its delivery was moved to {i['location']}/ and nothing was staged."
            for d, i in isolated.items()
        )
        description = (
            f"table {name!r}: high-severity sensitive data in columns not declared sensitive "
            f"({days}). {detail} The load is blocked for every day of this run. To resolve: if a "
            f"column is meant to hold this data, declare it `sensitive = true` in [tables.{name}] "
            "and re-run the dump; otherwise have upstream redeliver without it (the landing zone "
            'still holds the files) and re-run the dump, or set scan.action = "mask" or "hash".'
        )
        severity, passed = dg.AssetCheckSeverity.ERROR, False
    elif undeclared:
        detail = " ".join(f"Partition {d}: {_describe(v)}." for d, v in undeclared.items())
        rewritten = "; ".join(
            f"{d}: {', '.join(f'{c} {how}' for c, how in p.items())}" for d, p in protected.items()
        )
        done = f" Rewritten in the staged data: {rewritten}." if rewritten else ""
        description = (
            f"table {name!r}: sensitive data in columns not declared sensitive. {detail}{done} "
            f"Declare the columns `sensitive = true` in [tables.{name}] if they are meant to hold it."
        )
        severity, passed = dg.AssetCheckSeverity.WARN, False
    else:
        description = f"no sensitive data outside the columns declared sensitive in {name!r}"
        severity, passed = dg.AssetCheckSeverity.WARN, True
    return dg.AssetCheckResult(
        check_name=SENSITIVE_CHECK,
        asset_key=dg.AssetKey(["raw", name]),
        passed=passed,
        severity=severity,
        description=description,
        metadata=metadata,
    )


def scan_metadata(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Materialization metadata of the scan: per partition, rows per column and identifier."""
    scans = {d: m["scan"] for d, m in manifests.items() if "scan" in m}
    if not scans:
        return {}
    return {
        "sensitive_rows_scanned": sum(s["rows_scanned"] for s in scans.values()),
        "sensitive_findings": dg.MetadataValue.json(
            {
                d: {f"{f['column']}/{f['identifier']}": f["rows"] for f in s["findings"]}
                for d, s in scans.items()
                if s["findings"]
            }
        ),
        "isolated_partitions": dg.MetadataValue.json(
            {d: m["isolated"]["location"] for d, m in manifests.items() if m.get("isolated")}
        ),
    }
