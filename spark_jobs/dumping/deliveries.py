"""The dump's work on a table's days: copy each delivered file byte for byte into the raw zone (with
its sha256), parse it once into the staged zone, scan it, and write a manifest per day.

The raw zone keeps the delivery byte for byte (sha256 in the manifest); the staged zone holds each
file parsed once into Parquet (see staging.py), which is what the load reads. Both passes stream,
so memory stays bounded whatever the delivery size. The work on bytes is a function of one file,
mapped by ``map_work`` (threads here); what depends on delivery order is decided in order, on the
caller's thread. Listing a delivery, extracting from a database and reporting are the
orchestrator's (``dp_assets.stages.dump``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from spark_jobs.contract import CsvOptions, DumpSpec
from spark_jobs.dumping.layout import TableLayout
from spark_jobs.dumping.parts import LineCuts, Part
from spark_jobs.dumping.scan import ScanPolicy, redact, scan_staged_file, summarize
from spark_jobs.dumping.sniff import is_wide
from spark_jobs.dumping.staging import NeedsWholeFile, stage_file
from spark_jobs.storage import Store, StoredFile, read_json_if_exists, write_json

# Spark's own rule for packing files into a scan's tasks (spark.sql.files.maxPartitionBytes and
# openCostInBytes, at their defaults): a task takes files up to a split's bytes, and each file
# counts its bytes plus the cost of opening one.
MAX_TASK_BYTES = 128 << 20
OPEN_COST_BYTES = 4 << 20


@dataclass(frozen=True)
class TableDump(TableLayout):
    """A table's layout with what dumping it reads and writes: the landing and lake stores, and how
    its files are parsed."""

    landing: Store
    store: Store
    file_format: str  # csv | jsonl | parquet (an extract is CSV)
    csv: CsvOptions
    columns: tuple[str, ...]  # the design's, which a header is matched against
    part_bytes: int = MAX_TASK_BYTES  # a large CSV file is parsed in parts of about a task's bytes


class ChangedDuringCopy(RuntimeError):
    """A delivered file's size changed while it was copied."""


def clean_up(dump: TableDump, days: list[str]) -> int:
    """Delete what the dump wrote for these days (and only these days); returns files removed. The
    published partitions are the load's to replace, after its audit."""
    return sum(
        dump.store.delete_prefix(prefix)
        for day in days
        for prefix in (dump.raw_prefix(day), dump.staged_prefix(day))
    )


def copy_with_sha256(
    src: Store, src_path: str, dst: Store, dst_path: str, watch: Callable[[bytes], None] | None = None
) -> dict[str, Any]:
    """Byte-exact streaming copy; returns the bytes copied and their sha256. ``watch`` sees every
    chunk on the way."""
    digest, size = hashlib.sha256(), 0
    with src.open_read(src_path) as fin, dst.open_write(dst_path) as fout:
        while chunk := fin.read(8 << 20):
            digest.update(chunk)
            if watch is not None:
                watch(chunk)
            fout.write(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _first_delivered_as(
    dump: TableDump, day: str, rel: str, sha256: str, marked: list[tuple[str, str]]
) -> str | None:
    """The partition/file that first delivered this content, when it was another partition; when
    no partition did, this one is marked as the first (and the mark added to ``marked``)."""
    index = dump.delivery_index(sha256)
    first = read_json_if_exists(dump.store, index)
    if first is None:
        write_json(dump.store, index, {"partition": day, "file": rel})
        marked.append((day, index))
        return None
    return None if first["partition"] == day else f"{first['partition']}/{first['file']}"


def isolate_delivery(dump: TableDump, day: str, entries: list[dict[str, Any]]) -> str:
    """Move the day's raw and staged files to the isolation zone; returns its location.

    The delivery-index markers of its files are dropped, so the same content delivered again (for
    any day) is staged and scanned again instead of being skipped as a duplicate.
    """
    target = dump.isolated_prefix(day)
    dump.store.delete_prefix(target)  # a re-dump replaces the day's isolated files, never adds to them
    for zone, prefix in (("raw", dump.raw_prefix(day)), ("staged", dump.staged_prefix(day))):
        for f in dump.store.list(prefix):
            copy_with_sha256(dump.store, f.path, dump.store, f"{target}/{zone}/{f.path[len(prefix) + 1 :]}")
        dump.store.delete_prefix(prefix)
    for e in entries:
        index = dump.delivery_index(e["sha256"])
        first = None if e.get("duplicate_of") else read_json_if_exists(dump.store, index)
        if first and first["partition"] == day:
            dump.store.delete(index)
    return dump.store.uri(target)


def cuttable(dump: TableDump, policy: ScanPolicy | None) -> bool:
    """Whether the table's large files may be parsed in parts: CSV in a narrow encoding (a newline is
    one byte), under a scan that decides per row (one that samples, masks or hashes decides over
    whole files, as declared)."""
    if policy is not None and (policy.action in ("mask", "hash") or policy.sample_rows is not None):
        return False
    return dump.file_format == "csv" and not is_wide(dump.csv.encoding)


def copy_delivered_file(dump: TableDump, day: str, f: StoredFile, cut: bool) -> dict[str, Any]:
    """Copy one delivered file byte for byte into the raw zone; its manifest entry so far, with the
    ``parts`` its parse can be cut into (``LineCuts``) when ``cut`` and the file allows it."""
    rel = f.path[len(dump.delivery_prefix(day)) + 1 :]
    cuts = LineCuts(dump.part_bytes) if cut else None
    copied = copy_with_sha256(
        dump.landing, f.path, dump.store, f"{dump.raw_prefix(day)}/{rel}", cuts.update if cuts else None
    )
    if copied["bytes"] != f.size:
        raise ChangedDuringCopy(
            f"table {dump.name!r}, partition {day}: copied {copied['bytes']} bytes of "
            f"{dump.landing.uri(f.path)} but the delivery lists {f.size}; the file changed during the "
            "copy — re-run the dump"
        )
    parts = cuts.parts(copied["bytes"]) if cuts else []
    return {"file": rel, "source": dump.landing.uri(f.path), **copied, "parts": parts}


_T = TypeVar("_T")
_R = TypeVar("_R")


class MapWork(Protocol):
    """Runs ``work`` on each item, wherever the work runs; the results in the items' order.
    ``sizes`` are the items' bytes, for whatever packs items into tasks."""

    def __call__(self, work: Callable[[_T], _R], items: list[_T], sizes: list[int], /) -> list[_R]: ...


# Delivered files copied, parsed and scanned at once: S3 requests wait on the network, pyarrow
# parses without the GIL, and each file's work bounds its own memory (so the dump's peak is up to
# this many files' worth). Database extracts stay one day at a time, as the source expects.
DUMP_THREADS = 4


def threads(work: Callable[[_T], _R], items: list[_T], sizes: list[int]) -> list[_R]:
    """``map_work`` in this process: ``DUMP_THREADS`` at a time, results in order."""
    with ThreadPoolExecutor(DUMP_THREADS, thread_name_prefix="dump") as pool:
        return list(pool.map(work, items))


def table_dump(spec: DumpSpec, landing: Store, store: Store) -> TableDump:
    """The dump a spec describes, reading ``landing`` and writing ``store`` (its two roots)."""
    return TableDump(
        spec["table"],
        spec["partition_column"],
        spec["source_prefix"],
        landing=landing,
        store=store,
        file_format=spec["file_format"],
        csv=CsvOptions(**spec["csv"]),
        columns=tuple(spec["columns"]),
    )


def dump_as_specified(
    spec: DumpSpec, landing: Store, store: Store, map_work: MapWork = threads
) -> dict[str, dict[str, Any]]:
    """``dump_days`` as ``spec`` asks; the days' manifests."""
    listings = {
        day: [StoredFile(f["path"], f["size"]) for f in files] for day, files in spec["delivered"].items()
    }
    policy = ScanPolicy.from_spec(spec["scan"]) if spec["scan"] else None
    dump = table_dump(spec, landing, store)
    return dump_days(dump, spec["days"], listings, policy, spec["extracted"], map_work)


def on_executors(spark_context: Any) -> MapWork:
    """``map_work`` on a Spark application's executors, the results collected on the driver in order.
    A file is read and written by one task, and a task takes a run of consecutive files packed by
    Spark's rule for a scan (``pack``): a day of small files would otherwise pay a task's scheduling
    and the pickled work per file, and large files still get a task each."""

    def run(work: Callable[[_T], _R], items: list[_T], sizes: list[int]) -> list[_R]:
        if not items:
            return []
        groups = pack(items, sizes, spark_context.defaultParallelism)
        tasks = spark_context.parallelize(groups, len(groups))
        return tasks.flatMap(lambda group: [work(item) for item in group]).collect()

    return run


def pack(items: list[_T], sizes: list[int], cores: int) -> list[list[_T]]:
    """Consecutive runs of ``items`` of at most one split each, as Spark packs a scan's files: the
    split is the bytes per core, between one file's open cost and ``MAX_TASK_BYTES``."""
    weights = [size + OPEN_COST_BYTES for size in sizes]
    split = min(MAX_TASK_BYTES, max(OPEN_COST_BYTES, sum(weights) // max(cores, 1)))
    groups: list[list[_T]] = []
    bytes_in_group = 0
    for item, size, weight in zip(items, sizes, weights, strict=True):
        if not groups or bytes_in_group + size > split:
            groups.append([])
            bytes_in_group = 0
        groups[-1].append(item)
        bytes_in_group += weight
    return groups


def dump_days(
    dump: TableDump,
    days: list[str],
    listings: dict[str, list[StoredFile]],
    policy: ScanPolicy | None = None,
    extracted: dict[str, list[dict[str, Any]]] | None = None,
    map_work: MapWork = threads,
) -> dict[str, dict[str, Any]]:
    """Copy a table's deliveries for ``days`` into the raw zone, stage them for Spark, and write a
    manifest per day.

    Outcomes worth knowing: a file whose content was already delivered for another day is kept in
    the raw zone but not staged (``duplicate_of``); files absent from the previous manifest of this
    day are listed as ``late_files``; a day whose files hold no records stages nothing and loads as
    an empty partition. With a scan ``policy``, each staged file is scanned for sensitive data
    (``scan``: counts only); a high-severity finding in a column not declared sensitive either
    isolates the whole day (``isolated``: nothing stays staged) or was masked/hashed in the staged file.

    ``listings`` holds each day's delivered files, listed before anything is written (so a missing
    delivery changes nothing); a database table's raw files were written by its extract instead,
    whose entries are ``extracted``. The work on delivered bytes (copy with sha256, parse, scan) is a
    function of one file, mapped over all the days' files by ``map_work`` (``DUMP_THREADS`` threads
    by default). What depends on delivery order is decided day by day in order, here: which day
    delivered a content first, and an isolated day giving that up, so the outcome is the one of
    dumping the days one after another. A failure on the way leaves each day without a new manifest
    not dumped at all (no raw or staged files, no first-delivery marks), for the next run to dump.
    """
    previous = {day: read_json_if_exists(dump.store, dump.manifest_path(day)) for day in days}
    manifests: dict[str, dict[str, Any]] = {}
    marked: list[tuple[str, str]] = []  # (day, index object) of the first deliveries this run marks
    try:
        for day in days:  # a re-dump replaces the partition's files, never adds to them
            if extracted is None:  # an extract's raw files are new already
                dump.store.delete_prefix(dump.raw_prefix(day))
            dump.store.delete_prefix(dump.staged_prefix(day))
        copied: dict[str, list[dict[str, Any]]] = {day: [] for day in days}
        if extracted is not None:
            copied = {day: [dict(e) for e in extracted[day]] for day in days}
        else:
            work = [(day, f) for day in days for f in listings[day]]
            cut = cuttable(dump, policy)
            entries = map_work(lambda w: copy_delivered_file(dump, *w, cut), work, [f.size for _, f in work])
            for (day, _), entry in zip(work, entries, strict=True):
                copied[day].append(entry)
            for day in days:  # an extract is no delivery: the same rows on two days are snapshots
                for entry in copied[day]:
                    first = _first_delivered_as(dump, day, entry["file"], entry["sha256"], marked)
                    if first:
                        entry.update(duplicate_of=first, rows=0, rejected=0)
        parts = {(day, e["file"]): e.pop("parts", []) for day in days for e in copied[day]}
        firsts = [(day, e) for day in days for e in copied[day] if not e.get("duplicate_of")]
        staged = stage_files(
            dump, [(day, e["file"], e["bytes"], parts[day, e["file"]]) for day, e in firsts], policy, map_work
        )
        for (_, entry), done in zip(firsts, staged, strict=True):
            entry.update(done)  # a worker elsewhere fills in a copy of the entry
        for day in days:
            for entry in copied[day]:
                if manifests.get(_first_day(entry), {}).get("isolated"):  # that day gave its files up:
                    del entry["duplicate_of"]  # this is a first delivery now, as if dumped in turn
                    first = _first_delivered_as(dump, day, entry["file"], entry["sha256"], marked)
                    if first:
                        entry["duplicate_of"] = first
                    else:
                        entry.update(stage_entry(dump, day, entry["file"], policy))
            manifests[day] = write_manifest(dump, day, copied[day], previous[day], policy)
    except BaseException:
        _undo(dump, [d for d in days if d not in manifests], marked)
        raise
    return manifests


def _first_day(entry: dict[str, Any]) -> str | None:
    """The partition that first delivered a duplicate's content (``duplicate_of`` is day/file)."""
    return entry["duplicate_of"].split("/", 1)[0] if entry.get("duplicate_of") else None


def _undo(dump: TableDump, days: list[str], marked: list[tuple[str, str]]) -> None:
    """Leave ``days`` not dumped: no raw or staged files, and no first-delivery marks this run set
    for them (nothing staged would back them)."""
    for day in days:
        dump.store.delete_prefix(dump.raw_prefix(day))
        dump.store.delete_prefix(dump.staged_prefix(day))
    for day, index in marked:
        first = read_json_if_exists(dump.store, index) if day in days else None
        if first and first["partition"] == day:
            dump.store.delete(index)


def staged_name(rel: str) -> str:
    """The staged file's name for a delivered file's path: flat, and distinct for ``a/b.csv`` and
    ``a__b.csv`` in one delivery."""
    if "/" not in rel:
        return rel
    return f"{rel.replace('/', '__')}.{hashlib.sha256(rel.encode()).hexdigest()[:8]}"


def stage_files(
    dump: TableDump,
    files: list[tuple[str, str, int, list[Part]]],
    policy: ScanPolicy | None,
    map_work: MapWork,
) -> list[dict[str, Any]]:
    """Stage each (day, file, bytes, parts): what each adds to its manifest entry. A file with parts
    is parsed (and scanned) as its parts side by side, each to a staged file of its own, and their
    outcomes summed. When a part meets what only the whole file's parse can be trusted with (an
    anomaly, which the exact path reports line by line, a quote or carriage return in a value, or
    the rest ``staging._check_part`` lists), that file is staged whole after all, so the outcome is
    always the one of staging it whole."""
    pieces = [(i, day, rel, part) for i, (day, rel, _, parts) in enumerate(files) for part in parts or [None]]
    done = map_work(
        lambda w: stage_entry(dump, w[1], w[2], policy, w[3]),
        pieces,
        [part.end - part.start if part else files[i][2] for i, _, _, part in pieces],
    )
    outcomes: list[list[dict[str, Any]]] = [[] for _ in files]
    for (i, *_), outcome in zip(pieces, done, strict=True):
        outcomes[i].append(outcome)
    merged = [_summed(o) for o in outcomes]
    again = [i for i, m in enumerate(merged) if m is None]
    redone = map_work(
        lambda i: stage_entry(dump, files[i][0], files[i][1], policy, drop_parts=len(files[i][3])),
        again,
        [files[i][2] for i in again],
    )
    for i, outcome in zip(again, redone, strict=True):
        merged[i] = outcome
    return [m for m in merged if m is not None]


def _summed(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A file's manifest additions from its parts' (one part: the whole file's); None when a part
    asks for the whole file to be staged."""
    if any("whole" in p for p in parts):
        return None
    if len(parts) == 1:
        return parts[0]
    summed = {
        **parts[0],
        "rows": sum(p["rows"] for p in parts),
        "rejected": sum(p["rejected"] for p in parts),
        "parts": len(parts),
    }
    scans = [p["scan"] for p in parts if "scan" in p]
    if scans:
        total = summarize([{"scan": s} for s in scans])
        total["findings"].sort(key=lambda f: (f["column"], f["identifier"]))
        summed["scan"] = {"rows": sum(s["rows"] for s in scans), **total}
    return summed


def staged_path(dump: TableDump, day: str, rel: str, part: int | None = None) -> str:
    """Where a delivered file (or part ``part`` of it) is staged. A part's name carries a hash of
    the file's, as a nested file's does, so only a delivered name made to copy it stages to one."""
    suffix = "" if part is None else f".part-{part:05d}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}"
    return f"{dump.staged_prefix(day)}/{staged_name(rel)}{suffix}.parquet"


def stage_entry(
    dump: TableDump,
    day: str,
    rel: str,
    policy: ScanPolicy | None,
    part: Part | None = None,
    drop_parts: int = 0,
) -> dict[str, Any]:
    """Parse one raw file (or one ``part`` of it) into the staged zone, and scan it; what that adds
    to its manifest entry, or ``{"whole": why}`` when the part cannot be parsed apart from the rest.
    ``drop_parts``: the file was staged in that many parts before, deleted first."""
    raw_path = f"{dump.raw_prefix(day)}/{rel}"
    for index in range(drop_parts):
        dump.store.delete(staged_path(dump, day, rel, index))
    path = staged_path(dump, day, rel, part.index if part else None)
    try:
        with dump.store.open_write(path) as sink:
            staged = stage_file(
                lambda *span: dump.store.open_read(raw_path, *span),
                rel,
                dump.csv,
                list(dump.columns),
                sink,
                dump.file_format,
                part=part,
            )
    except NeedsWholeFile as why:
        return {"whole": str(why)}
    done: dict[str, Any] = dict(
        rows=staged.rows,
        rejected=staged.rejected,
        columns=staged.columns,
        header_matches=staged.header_matches,
        parser=staged.parser,
        notes=[redact(n) for n in staged.notes],  # a parser message may quote the data
        warnings=staged.warnings,  # about the file (its bytes, header names), never its values
    )
    if not staged.columns and not staged.rows:
        dump.store.delete(path)  # nothing to stage: empty, header-less or not text
    elif policy is not None:
        done["scan"] = scan_staged_file(dump.store, path, policy, rel).as_dict()
    return done


def write_manifest(
    dump: TableDump,
    day: str,
    entries: list[dict[str, Any]],
    previous: dict[str, Any] | None,
    policy: ScanPolicy | None,
) -> dict[str, Any]:
    """The day's manifest from its files' entries and the manifest it replaces (isolating the day
    when its scan says so), written."""
    known = {e["file"] for e in previous["files"]} if previous else set()
    manifest = {
        "table": dump.name,
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
                "location": isolate_delivery(dump, day, entries),
                "columns": sorted({f["column"] for f in violations}),
                "identifiers": sorted({f["identifier"] for f in violations}),
            }
    write_json(dump.store, dump.manifest_path(day), manifest)
    return manifest
