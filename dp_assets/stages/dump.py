"""dump: copy a day's delivery from the landing zone into the raw zone, stage it, write a manifest.

The raw zone keeps the delivery byte for byte (sha256 in the manifest); the staged zone holds each
file parsed once into Parquet (see staging.py), which is what the load reads. Both passes stream,
so memory stays bounded whatever the delivery size.
"""

import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from dp_assets.catalog import asset_tags, catalog_metadata
from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import ENVS, PROTECTED_ENVS, FileSource, PostgresSource, Table
from dp_assets.config.resource import PipelineConfigResource
from dp_assets.lake import Lake
from dp_assets.lineage import dataset, emit, table_facets
from dp_assets.stages.postgres import extract_partition
from dp_assets.stages.sensitive import SENSITIVE_CHECK, scan_metadata, scan_policy_for, sensitive_check
from spark_jobs.contract import RANGE_TOTALS
from spark_jobs.dumping.scan import ScanPolicy, redact, scan_staged_file, summarize
from spark_jobs.dumping.staging import stage_file
from spark_jobs.storage import Store, read_json_if_exists, write_json


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


def clean_up(lake: Lake, name: str, days: list[str]) -> int:
    """Delete what the dump wrote for these days (and only these days); returns files removed. The
    published partitions are the load's to replace, after its audit."""
    return sum(
        lake.store.delete_prefix(prefix)
        for day in days
        for prefix in (lake.raw_prefix(name, day), lake.staged_prefix(name, day))
    )


def copy_with_sha256(src: Store, src_path: str, dst: Store, dst_path: str) -> dict[str, Any]:
    """Byte-exact streaming copy; returns the bytes copied and their sha256."""
    digest, size = hashlib.sha256(), 0
    with src.open_read(src_path) as fin, dst.open_write(dst_path) as fout:
        while chunk := fin.read(8 << 20):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _first_delivered_as(
    lake: Lake, name: str, day: str, rel: str, sha256: str, marked: list[tuple[str, str]]
) -> str | None:
    """The partition/file that first delivered this content, when it was another partition; when
    no partition did, this one is marked as the first (and the mark added to ``marked``)."""
    index = lake.delivery_index(name, sha256)
    first = read_json_if_exists(lake.store, index)
    if first is None:
        write_json(lake.store, index, {"partition": day, "file": rel})
        marked.append((day, index))
        return None
    return None if first["partition"] == day else f"{first['partition']}/{first['file']}"


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


def isolate_delivery(lake: Lake, name: str, day: str, entries: list[dict[str, Any]]) -> str:
    """Move the day's raw and staged files to the isolation zone; returns its location.

    The delivery-index markers of its files are dropped, so the same content delivered again (for
    any day) is staged and scanned again instead of being skipped as a duplicate.
    """
    target = lake.isolated_prefix(name, day)
    lake.store.delete_prefix(target)  # a re-dump replaces the day's isolated files, never adds to them
    for zone, prefix in (("raw", lake.raw_prefix(name, day)), ("staged", lake.staged_prefix(name, day))):
        for f in lake.store.list(prefix):
            copy_with_sha256(lake.store, f.path, lake.store, f"{target}/{zone}/{f.path[len(prefix) + 1 :]}")
        lake.store.delete_prefix(prefix)
    for e in entries:
        index = lake.delivery_index(name, e["sha256"])
        first = None if e.get("duplicate_of") else read_json_if_exists(lake.store, index)
        if first and first["partition"] == day:
            lake.store.delete(index)
    return lake.uri(target)


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


def copy_delivered_file(lake: Lake, name: str, day: str, f: Any) -> dict[str, Any]:
    """Copy one delivered file byte for byte into the raw zone; its manifest entry so far."""
    rel = f.path[len(lake.delivery_prefix(name, day)) + 1 :]
    copied = copy_with_sha256(lake.landing, f.path, lake.store, f"{lake.raw_prefix(name, day)}/{rel}")
    if copied["bytes"] != f.size:
        raise dg.Failure(
            f"table {name!r}, partition {day}: copied {copied['bytes']} bytes of "
            f"{lake.landing.uri(f.path)} but the delivery lists {f.size}; the file changed during the "
            "copy — re-run the dump"
        )
    return {"file": rel, "source": lake.landing.uri(f.path), **copied}


# Delivered files copied, parsed and scanned at once: S3 requests wait on the network, pyarrow
# parses without the GIL, and each file's work bounds its own memory (so the dump's peak is up to
# this many files' worth). Database extracts stay one day at a time, as the source expects.
DUMP_THREADS = 4


def dump_partitions(
    lake: Lake, name: str, days: list[str], policy: ScanPolicy | None = None
) -> dict[str, dict[str, Any]]:
    """Copy a table's deliveries for ``days`` into the raw zone, stage them for Spark, and write a
    manifest per day.

    Outcomes worth knowing: a file whose content was already delivered for another day is kept in
    the raw zone but not staged (``duplicate_of``); files absent from the previous manifest of this
    day are listed as ``late_files``; a day whose files hold no records stages nothing and loads as
    an empty partition. With a scan ``policy``, each staged file is scanned for sensitive data
    (``scan``: counts only); a high-severity finding in a column not declared sensitive either
    isolates the whole day (``isolated``: nothing stays staged) or was masked/hashed in the staged file.

    The work on delivered bytes (copy with sha256, parse, scan) runs on ``DUMP_THREADS`` threads
    across all the days' files. What depends on delivery order is decided day by day in order: which
    day delivered a content first, and an isolated day giving that up, so the outcome is the one of
    dumping the days one after another. Every day is listed before anything is written, so a missing
    delivery changes nothing; a failure on the way leaves each day without a new manifest not
    dumped at all (no raw or staged files, no first-delivery marks), for the next run to dump.
    """
    table = lake.table(name)
    extract = table.source if isinstance(table.source, PostgresSource) else None
    listings = {day: list_delivery(lake, name, day) if extract is None else [] for day in days}
    previous = {day: read_json_if_exists(lake.store, lake.manifest_path(name, day)) for day in days}
    manifests: dict[str, dict[str, Any]] = {}
    marked: list[tuple[str, str]] = []  # (day, index object) of the first deliveries this run marks
    try:
        for day in days:  # a re-dump replaces the partition's files, never adds to them
            lake.store.delete_prefix(lake.raw_prefix(name, day))
            lake.store.delete_prefix(lake.staged_prefix(name, day))
        with ThreadPoolExecutor(DUMP_THREADS, thread_name_prefix=f"dump-{name}") as pool:
            copied: dict[str, list[dict[str, Any]]] = {day: [] for day in days}
            if extract is not None:
                for day in days:
                    copied[day] = extract_partition(
                        name, extract, day, lake.store, lake.raw_prefix(name, day)
                    )
            else:
                work = [(day, f) for day in days for f in listings[day]]
                entries = pool.map(lambda w: copy_delivered_file(lake, name, *w), work)
                for (day, _), entry in zip(work, entries, strict=True):
                    copied[day].append(entry)
                for day in days:  # an extract is no delivery: the same rows on two days are snapshots
                    for entry in copied[day]:
                        first = _first_delivered_as(lake, name, day, entry["file"], entry["sha256"], marked)
                        if first:
                            entry.update(duplicate_of=first, rows=0, rejected=0)
            firsts = [(day, e) for day in days for e in copied[day] if not e.get("duplicate_of")]
            list(pool.map(lambda w: stage_entry(lake, name, *w, policy), firsts))
        for day in days:
            for entry in copied[day]:
                if manifests.get(_first_day(entry), {}).get("isolated"):  # that day gave its files up:
                    del entry["duplicate_of"]  # this is a first delivery now, as if dumped in turn
                    first = _first_delivered_as(lake, name, day, entry["file"], entry["sha256"], marked)
                    if first:
                        entry["duplicate_of"] = first
                    else:
                        stage_entry(lake, name, day, entry, policy)
            manifests[day] = write_manifest(lake, name, day, copied[day], previous[day], policy)
    except BaseException:
        _undo(lake, name, [d for d in days if d not in manifests], marked)
        raise
    return manifests


def _first_day(entry: dict[str, Any]) -> str | None:
    """The partition that first delivered a duplicate's content (``duplicate_of`` is day/file)."""
    return entry["duplicate_of"].split("/", 1)[0] if entry.get("duplicate_of") else None


def _undo(lake: Lake, name: str, days: list[str], marked: list[tuple[str, str]]) -> None:
    """Leave ``days`` not dumped: no raw or staged files, and no first-delivery marks this run set
    for them (nothing staged would back them)."""
    for day in days:
        lake.store.delete_prefix(lake.raw_prefix(name, day))
        lake.store.delete_prefix(lake.staged_prefix(name, day))
    for day, index in marked:
        first = read_json_if_exists(lake.store, index) if day in days else None
        if first and first["partition"] == day:
            lake.store.delete(index)


def staged_name(rel: str) -> str:
    """The staged file's name for a delivered file's path: flat, and distinct for ``a/b.csv`` and
    ``a__b.csv`` in one delivery."""
    if "/" not in rel:
        return rel
    return f"{rel.replace('/', '__')}.{hashlib.sha256(rel.encode()).hexdigest()[:8]}"


def stage_entry(lake: Lake, name: str, day: str, entry: dict[str, Any], policy: ScanPolicy | None) -> None:
    """Parse one raw file into the staged zone (and scan it), completing its manifest entry."""
    table = lake.table(name)
    rel = entry["file"]
    raw_path = f"{lake.raw_prefix(name, day)}/{rel}"
    staged_path = f"{lake.staged_prefix(name, day)}/{staged_name(rel)}.parquet"
    with lake.store.open_write(staged_path) as sink:
        staged = stage_file(
            lambda: lake.store.open_read(raw_path),
            rel,
            table.source.csv.options(),
            [c.name for c in table.columns],
            sink,
            getattr(table.source, "format", "csv"),  # an extract is CSV
        )
    entry.update(
        rows=staged.rows,
        rejected=staged.rejected,
        columns=staged.columns,
        header_matches=staged.header_matches,
        parser=staged.parser,
        notes=[redact(n) for n in staged.notes],  # a parser message may quote the data
        warnings=staged.warnings,  # about the file (its bytes, header names), never its values
    )
    if not staged.columns and not staged.rows:
        lake.store.delete(staged_path)  # nothing to stage: empty, header-less or not text
    elif policy is not None:
        entry["scan"] = scan_staged_file(lake.store, staged_path, policy, rel).as_dict()


def write_manifest(
    lake: Lake,
    name: str,
    day: str,
    entries: list[dict[str, Any]],
    previous: dict[str, Any] | None,
    policy: ScanPolicy | None,
) -> dict[str, Any]:
    """The day's manifest from its files' entries and the manifest it replaces (isolating the day
    when its scan says so), written."""
    known = {e["file"] for e in previous["files"]} if previous else set()
    manifest = {
        "table": name,
        "partition": day,
        "files": entries,
        "rows": sum(e["rows"] for e in entries),
        "rejected_at_parse": sum(e["rejected"] for e in entries),
        "bytes": sum(e["bytes"] for e in entries),
        "sha256": hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest(),
        "duplicates": [e["file"] for e in entries if e.get("duplicate_of")],
        "late_files": sorted({e["file"] for e in entries} - known) if previous else [],
        "dumped_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if policy is not None:
        manifest["scan"] = summary = summarize(entries)
        violations = [f for f in summary["findings"] if f["severity"] == "high" and not f["declared"]]
        if violations and policy.action == "isolate":
            manifest["isolated"] = {
                "location": isolate_delivery(lake, name, day, entries),
                "columns": sorted({f["column"] for f in violations}),
                "identifiers": sorted({f["identifier"] for f in violations}),
            }
    write_json(lake.store, lake.manifest_path(name, day), manifest)
    return manifest


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


def source_uri(lake: Lake, name: str, manifests: dict[str, dict[str, Any]]) -> str:
    """What the dump read: the landing prefix, or the database table an extract came from."""
    source = lake.table(name).source
    if isinstance(source, PostgresSource):
        return next((f["source"] for m in manifests.values() for f in m["files"]), source.qualified)
    return lake.landing.uri(source.prefix.strip("/"))


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


# The dump's checks that block the load: a failure means the load must not run.
BLOCKING_DUMP_CHECKS = frozenset({SENSITIVE_CHECK})


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


def dump_table(
    context: dg.AssetExecutionContext, flags: RestartFlags, pipeline: PipelineConfigResource, name: str
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Dump a table's days into the raw and staged zones (in this process), reporting ``raw/<name>``
    and its checks."""
    loaded = pipeline.loaded
    table = loaded.config.tables[name]
    key = dump_key(name)
    started = time.monotonic()
    if flags.e2e_test:
        refuse_e2e_test(loaded.env)
    lake = Lake(loaded, e2e_test=flags.e2e_test)
    policy = scan_policy(loaded, table)
    # The caller holds the table's lock (the raw and staged zones are the table's too) through the load.
    if flags.clean_up:
        purged = clean_up(lake, name, context.partition_keys)
        context.log.warning(f"{name}: clean-up removed {purged} file(s) for {context.partition_key_range}")
    manifests = dump_partitions(lake, name, context.partition_keys, policy)
    for day, m in manifests.items():
        context.log.info(
            f"{name} {day}: {len(m['files'])} file(s), {m['rows']} rows "
            f"({m['rejected_at_parse']} unparseable), {m['bytes']} bytes"
        )
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
                    "dump_seconds": round(time.monotonic() - started, 2),
                }
            ),
            **pipeline.provenance_metadata(),
        },
    )
    emit(
        context,
        loaded,
        f"raw.{name}",
        inputs=[dataset(source_uri(lake, name, manifests))],
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
    if policy is not None:
        yield sensitive_check(name, table, manifests)
