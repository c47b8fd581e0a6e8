"""dump: a day's delivery from the landing zone (or a database extract) into the raw and staged
zones, with a manifest, as the ``raw/<table>`` asset and its checks.

This is the orchestrator's side: listing deliveries, extracting from PostgreSQL, the flags, and
reporting manifests to Dagster. The work on delivered bytes (copy with sha256, parse, scan) and the
manifests are ``spark_jobs.dumping.deliveries``.
"""

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg

from dp_assets.catalog import asset_tags, catalog_metadata
from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import ENVS, PROTECTED_ENVS, FileSource, PostgresSource, Table
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.lake import Lake
from dp_assets.lineage import dataset, emit, table_facets
from dp_assets.stages.postgres import extract_partition
from dp_assets.stages.sensitive import scan_metadata, scan_policy_for, sensitive_check
from spark_jobs.contract import RANGE_TOTALS, SENSITIVE_CHECK, DeliveredFile, DumpSpec
from spark_jobs.dumping.deliveries import clean_up, dump_as_specified
from spark_jobs.dumping.scan import ScanPolicy
from spark_jobs.storage import read_json


class MissingDelivery(dg.Failure):
    pass


class RestartFlags(dg.Config):
    """Ad-hoc flags for a run: the seed ADG's restart flags (CLEAN_UP_FLG, E2E_TEST_FLG) and the
    override that publishes a held-back version."""

    # purge the range's raw and staged files first; the load then replaces the published days (and
    # leaves them as they were if its checks fail: nothing is removed before an audit passed)
    clean_up: bool = False
    e2e_test: bool = False  # read deliveries from general.e2e_input_path instead of the source
    # a run id: publish the versions of the selected tables that its blocking checks held back, as
    # reviewed (`dp publish`); nothing is dumped or loaded anew
    publish_rejected: str | None = None


class E2ETestRefused(dg.Failure):
    pass


def refuse_e2e_test(env: str) -> None:
    """End-to-end test data must never stand in for the source where real data lives."""
    if env in PROTECTED_ENVS:
        raise E2ETestRefused(
            f"--e2e-test is refused in {env}: end-to-end test data may only be loaded in "
            f"{', '.join(e for e in ENVS if e not in PROTECTED_ENVS)}; nothing was read or written"
        )


def scan_policy(loaded: LoadedConfig, table: Table) -> ScanPolicy | None:
    """The table's sensitive-data scan (None: disabled), with the hash key when one is configured."""
    if not table.scan.enabled:
        return None
    governance = loaded.config.governance
    key = None
    if table.scan.action == "hash" and governance.hash_key_env:
        value = os.environ.get(governance.hash_key_env)
        if not value:
            raise dg.Failure(
                f"governance.hash_key_env names {governance.hash_key_env}, which is not set: set it to the "
                "secret hash key (the same in every environment whose hashes must join), or remove the key "
                "to hash with plain sha256"
            )
        key = value.encode()
    return scan_policy_for(table, governance, key)


def list_delivery(lake: Lake, name: str, day: str) -> list[Any]:
    """The files upstream dropped for a table and day (hidden and _-prefixed names are not data)."""
    prefix = lake.delivery_prefix(name, day)
    files = [f for f in lake.landing.list(prefix) if not f.path.rsplit("/", 1)[-1].startswith((".", "_"))]
    if not files:
        source = lake.table(name).source
        raise MissingDelivery(
            description=(
                f"no delivery for table {name!r}, partition {day}: "
                f"nothing under {lake.landing.uri(prefix)}/. "
                f"Upstream drops files at <input_path>/{getattr(source, 'prefix', '')}/<YYYY-MM-DD>/; "
                "check the date, or run `dp demo` to write the demo deliveries."
            ),
            metadata={"partition": day, "expected_location": lake.landing.uri(prefix)},
        )
    return files


def dump_spec(lake: Lake, name: str, days: list[str], policy: ScanPolicy | None = None) -> DumpSpec:
    """What dumping table ``name``'s ``days`` takes, as the contract says it: every day's delivery
    listed first, so a missing one stops the dump before anything is written; or a database table
    extracted into the raw zone, one day at a time as the source expects (a failed extract leaves
    the days not dumped)."""
    source, target = lake.table(name).source, lake.dump(name)
    delivered: dict[str, list[DeliveredFile]] = {}
    extracted = None
    if isinstance(source, PostgresSource):
        extracted = {}
        try:
            for day in days:
                raw = target.raw_prefix(day)
                lake.store.delete_prefix(raw)  # an extract replaces the day's files, never adds to them
                extracted[day] = extract_partition(name, source, day, lake.store, raw)
        except BaseException:
            clean_up(target, days)
            raise
    else:
        for day in days:
            delivered[day] = [{"path": f.path, "size": f.size} for f in list_delivery(lake, name, day)]
    return {
        "table": name,
        "partition_column": target.partition_column,
        "source_prefix": target.source_prefix,
        "landing_uri": target.landing.root,
        "lake_uri": target.store.root,
        "days": days,
        "delivered": delivered,
        "extracted": extracted,
        "file_format": target.file_format,
        "csv": dataclasses.asdict(target.csv),
        "columns": list(target.columns),
        "scan": policy.spec() if policy else None,
    }


def dump_partitions(
    lake: Lake, name: str, days: list[str], policy: ScanPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """Dump table ``name``'s ``days`` in this process (``deliveries.dump_days`` on threads); their
    manifests."""
    return dump_as_specified(dump_spec(lake, name, days, policy), lake.landing, lake.store)


DUPLICATE_CHECK = "no_duplicate_delivery"
FORMAT_CHECK = "files_as_declared"


def source_metadata(table: Table) -> dict[str, Any]:
    """Where the dump reads from, as definition metadata (a database by name, never its DSN)."""
    source = table.source
    if isinstance(source, PostgresSource):
        return {
            "source_table": f"{source.schema_name}.{source.table}",
            "source_dsn_env": source.dsn_env,
            "source_date_column": source.date_column or "(none: each day is a full snapshot)",
        }
    return {"source_prefix": source.prefix}


def source_uri(spec: DumpSpec, manifests: dict[str, dict[str, Any]]) -> str:
    """What the dump read: the landing prefix, or the database table an extract came from."""
    if spec["extracted"] is not None:
        return next((f["source"] for m in manifests.values() for f in m["files"]), spec["table"])
    return f"{spec['landing_uri']}/{spec['source_prefix'].strip('/')}"


def dump_asset_spec(name: str, table: Table) -> dg.AssetSpec:
    postgres = isinstance(table.source, PostgresSource)
    what = "rows extracted from PostgreSQL" if postgres else "delivery"
    return dg.AssetSpec(
        key=dump_key(name),
        group_name="dump",
        description=f"The day's {name} {what}: byte-exact in the raw zone, parsed in the staged zone.",
        kinds={"postgres", "csv"} if postgres else {"csv"},
        owners=table.owners,
        tags=asset_tags(table),
        metadata={**source_metadata(table), **catalog_metadata(table)},
    )


def dump_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", name])


def dump_check_specs(name: str, table: Table) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            DUPLICATE_CHECK,
            asset=dump_key(name),
            description="No delivered file repeats the content of a file delivered for another day "
            "(such files are kept in the raw zone but not loaded).",
        ),
        *(
            [
                dg.AssetCheckSpec(
                    FORMAT_CHECK,
                    asset=dump_key(name),
                    description="Every delivered file is what the table's source declares: its format "
                    f"({table.source.format}), in csv.encoding, compressed as its suffix says, a name for "
                    "every column that holds values. A text format's file that is not text (Parquet, "
                    "binary) is named and not staged; its bytes stay in the raw zone.",
                )
            ]
            if isinstance(table.source, FileSource)
            else []
        ),
        *(
            [
                dg.AssetCheckSpec(
                    SENSITIVE_CHECK,
                    asset=dump_key(name),
                    blocking=True,
                    description="No sensitive data (managed and custom identifiers) in columns not "
                    f"declared sensitive. On a high-severity finding ({table.scan.action}): "
                    + (
                        "the day's delivery is isolated and this check fails, blocking the load."
                        if table.scan.action == "isolate"
                        else "the column is rewritten in the staged data and this check warns."
                    ),
                )
            ]
            if table.scan.enabled
            else []
        ),
    ]


def prepare_dump(
    context: dg.AssetExecutionContext, flags: RestartFlags, pipeline: PipelineConfigResource, name: str
) -> DumpSpec:
    """What the run's Spark application dumps for ``raw/<name>``: the days' deliveries listed (a
    database table extracted) here, with the flags applied."""
    loaded = pipeline.loaded
    if flags.e2e_test:
        refuse_e2e_test(loaded.env)
    lake = Lake(loaded, e2e_test=flags.e2e_test)
    # The caller holds the table's lock (the raw and staged zones are the table's too) through the load.
    if flags.clean_up:
        purged = clean_up(lake.dump(name), context.partition_keys)
        context.log.warning(f"{name}: clean-up removed {purged} file(s) for {context.partition_key_range}")
    return dump_spec(lake, name, context.partition_keys, scan_policy(loaded, loaded.config.tables[name]))


def report_dump(
    context: dg.AssetExecutionContext,
    pipeline: PipelineConfigResource,
    name: str,
    spec: DumpSpec,
    seconds: float,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """``raw/<name>`` and its checks, from the manifests the run's dump wrote (``spec``'s days)."""
    loaded = pipeline.loaded
    table = loaded.config.tables[name]
    key = dump_key(name)
    lake = Lake(loaded)
    manifests = {day: read_json(lake.store, lake.manifest_path(name, day)) for day in spec["days"]}
    # One line for the table (each day's counts are on its partition's materialization): a line per
    # day is an event per day in Dagster's storage, 124 of them for the demo's month of four tables.
    context.log.info(
        f"{key.to_user_string()}: {len(manifests)} partition(s), "
        f"{sum(len(m['files']) for m in manifests.values())} file(s), "
        f"{sum(m['rows'] for m in manifests.values()):,} rows "
        f"({sum(m['rejected_at_parse'] for m in manifests.values()):,} unparseable), "
        f"{sum(m['bytes'] for m in manifests.values()):,} bytes"
    )
    for day, m in manifests.items():
        for f in m["files"]:
            for note in f.get("notes", []):
                context.log.warning(f"{name} {day} {f['file']}: {note}")
            for warning in f.get("warnings", []):
                context.log.warning(f"{name} {day} {f['file']}: {warning}")
        if m["late_files"]:
            context.log.warning(f"{name} {day}: late files {m['late_files']}; the day is reloaded whole")
        if m.get("isolated"):
            context.log.error(
                f"{name} {day}: high-severity sensitive data in columns {m['isolated']['columns']} "
                f"(not declared sensitive; {', '.join(m['isolated']['identifiers'])}): the delivery was "
                f"isolated to {m['isolated']['location']}/ and nothing was staged"
            )
        elif m.get("scan", {}).get("protected"):
            context.log.warning(f"{name} {day}: rewritten in the staged data: {m['scan']['protected']}")
    duplicates = {
        d: [f"{f['file']} = {f['duplicate_of']}" for f in m["files"] if f.get("duplicate_of")]
        for d, m in manifests.items()
    }
    duplicates = {d: v for d, v in duplicates.items() if v}
    misdeclared = {
        f"{d}/{f['file']}": f["warnings"]
        for d, m in manifests.items()
        for f in m["files"]
        if f.get("warnings")
    }
    for day, m in manifests.items():  # each partition's materialization carries its own counts
        context.add_asset_metadata(
            {
                "dagster/row_count": m["rows"],
                "rows_unparseable": m["rejected_at_parse"],
                "bytes": m["bytes"],
                "files": len(m["files"]),
            },
            asset_key=key,
            partition_key=day,
        )
    yield dg.MaterializeResult(
        asset_key=key,
        metadata={
            "rows_by_partition": dg.MetadataValue.json({d: m["rows"] for d, m in manifests.items()}),
            "sha256_by_partition": dg.MetadataValue.json({d: m["sha256"] for d, m in manifests.items()}),
            "late_files": dg.MetadataValue.json(
                {d: m["late_files"] for d, m in manifests.items() if m["late_files"]}
            ),
            "raw_location": dg.MetadataValue.path(lake.uri(lake.raw_root(name))),
            **scan_metadata(manifests),
            RANGE_TOTALS: dg.MetadataValue.json(
                {
                    "partitions": len(manifests),
                    "rows": sum(m["rows"] for m in manifests.values()),
                    "bytes": sum(m["bytes"] for m in manifests.values()),
                    "dump_seconds": seconds,
                }
            ),
            **pipeline.provenance_metadata(),
        },
    )
    emit(
        context,
        loaded,
        f"raw.{name}",
        inputs=[dataset(source_uri(spec, manifests))],
        outputs=[dataset(lake.uri(lake.raw_root(name)), table_facets(table))],
    )
    yield dg.AssetCheckResult(
        check_name=DUPLICATE_CHECK,
        asset_key=key,
        passed=not duplicates,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"duplicates": dg.MetadataValue.json(duplicates)},
    )
    if isinstance(table.source, FileSource):
        yield dg.AssetCheckResult(
            check_name=FORMAT_CHECK,
            asset_key=key,
            passed=not misdeclared,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"files": dg.MetadataValue.json(misdeclared)},
            description="; ".join(f"{f}: {', '.join(w)}" for f, w in misdeclared.items())[:2000] or None,
        )
    if spec["scan"] is not None:
        yield sensitive_check(name, table, manifests)
