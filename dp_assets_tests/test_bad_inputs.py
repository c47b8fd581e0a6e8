"""Every kind of bad delivery has a defined outcome, and every row is accounted for.

One Spark application loads all kinds (one per day); a second run shows deduplication and a late
file; evolution = "fail" is refused before Spark starts.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from dp_assets.config.loader import load_config_from
from dp_assets_tests.bad_inputs import KINDS, day_of, write_config, write_corpus
from dp_assets_tests.helpers import check_results, materializations, materialize_range, read_table

pytestmark = pytest.mark.spark_job  # also run on each EMR Spark line (.ci/run)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("corpus")
    by_day = write_corpus(home / "landing")
    loaded = load_config_from(str(write_config(home / "config.toml")), home=home)
    result = materialize_range(loaded, day_of(0), day_of(len(KINDS) - 1))
    return home, loaded, by_day, result


def published(loaded, start: str, end: str, result: dg.ExecuteInProcessResult) -> dg.ExecuteInProcessResult:
    """The run whose materializations describe what is published: ``result``, or, when its blocking
    checks held the table back (the corpus breaks key_unique and required_columns_not_null on
    purpose), the `dp publish` override of that version, which publishes exactly it."""
    if materializations(result, "events"):
        return result
    assert not result.success
    override = materialize_range(loaded, start, end, publish_rejected=result.run_id)
    assert override.success
    return override


@pytest.fixture(scope="module")
def corpus_published(corpus) -> dg.ExecuteInProcessResult:
    _, loaded, _, result = corpus
    return published(loaded, day_of(0), day_of(len(KINDS) - 1), result)


def _per_day(result: dg.ExecuteInProcessResult, node: str, key: str) -> dict[str, int]:
    return materializations(result, node)[0].metadata[key].value


def test_every_kind_has_its_outcome_and_rows_add_up(corpus, corpus_published) -> None:
    _, _, by_day, result = corpus
    rows_in = {
        m.partition: m.metadata["rows_by_partition"].value[m.partition]
        for m in materializations(result, "raw/events")
    }
    loaded_by_day = _per_day(corpus_published, "events", "rows_by_partition")
    quarantined = _per_day(corpus_published, "events", "quarantined_by_partition")
    table = []
    for day, kind in by_day.items():
        got = (rows_in[day], loaded_by_day[day], quarantined.get(day, 0))
        table.append(f"| {kind.name} | {got[0]} | {got[1]} | {got[2]} | {kind.what_happens} |")
        assert got[0] == got[1] + got[2], f"{kind.name}: rows in {got[0]} != loaded + quarantined {got[1:]}"
        if kind.rows_in >= 0:
            assert got == (kind.rows_in, kind.loaded, kind.quarantined), kind.name
        else:  # corrupt gzip: how much decompresses depends on where the stream is cut
            assert got[1] >= 3 and got[2] >= 1, got
    print("\n| kind | rows in | loaded | quarantined | outcome |\n|---|---|---|---|---|\n" + "\n".join(table))


def test_checks_fail_exactly_where_the_data_is_wrong(corpus) -> None:
    _, _, _, result = corpus
    assert check_results(result) == {
        "schema_matches_design": True,
        "required_columns_not_null": False,  # null key day
        "key_unique": False,  # duplicate key day (deduplication off)
        "row_accounting": True,
        "quarantine_within_threshold": False,  # 11 of ~300 rows, over max_ratio 0.02
        "no_duplicate_delivery": False,  # the copied file (WARN: does not block)
        "files_as_declared": False,  # the Parquet file, the lying suffix, UTF-16 (WARN)
        "no_undeclared_sensitive_data": True,
    }


def test_quarantine_keeps_raw_text_file_line_and_reason(corpus, corpus_published) -> None:
    _, loaded, by_day, _ = corpus
    q = read_table(Path(loaded.output_path) / "_quarantine" / "events").to_table()
    rows = {(str(r["event_date"]), r["_line"]): r for r in q.to_pylist()}
    day = {k.name: d for d, k in by_day.items()}
    wrong = rows[(day["wrong field count"], 5)]
    assert wrong["_reject_reason"] == "expected 4 fields, got 5"
    assert wrong["_raw_text"] == "4,d,4,2024-01-01 10:00:00,extra"
    assert wrong["_source_file"] == "d.csv"
    assert rows[(day["non-UTF-8"], 2)]["_raw_text"] == "1,caf\\xe9,1,2024-01-01 10:00:00"
    assert rows[(day["type change"], 3)]["_reject_reason"] == "amount: not a valid double"
    assert rows[(day["type change"], 2)]["_reject_reason"] == "id: not a valid int"
    assert rows[(day["unparseable value"], 2)]["_reject_reason"] == "ts: not a valid timestamp"
    assert rows[(day["wrong delimiter"], 4)]["_raw_text"] == "3;cy;3.5;2024-01-01 12:00:00"
    assert "corrupt compressed stream" in " ".join(
        r["_reject_reason"] for r in q.to_pylist() if str(r["event_date"]) == day["corrupt gzip"]
    )


def test_values_survive_standardisation(corpus, corpus_published) -> None:
    _, loaded, by_day, _ = corpus
    result = corpus_published
    t = read_table(Path(loaded.output_path) / "events").to_table()
    day = {k.name: d for d, k in by_day.items()}

    def rows(kind: str) -> list[dict]:
        return [r for r in t.to_pylist() if str(r["event_date"]) == day[kind]]

    assert rows("embedded newline")[0]["name"] == "two\nlines"
    assert len(rows("huge field")[0]["name"]) == 5 << 20
    assert rows("missing column")[0]["amount"] is None
    assert rows("reordered columns")[0]["name"] == "a" and rows("reordered columns")[0]["amount"] == 1.5
    assert rows("extra column")[0]["note"] == "hi"
    assert rows("BOM")[0]["id"] == 1 and rows("messy header")[0]["amount"] == 1.0
    assert [r["name"] for r in rows("UTF-16 with a byte-order mark")] == ["ann", "bob", "cy"]
    assert [r["amount"] for r in rows("trailing delimiter")] == [1.5, 2.5, 3.5]
    assert not {"column", "unnamed_5"} & set(t.column_names)  # the unnamed empty column was dropped
    assert pc.all(pc.equal(pc.utf8_length(t["row_hash"]), 64)).as_py()
    md = materializations(result, "events")[0].metadata
    assert [c["name"] for c in md["schema_after"].value][-1] == "note"
    assert "note" not in [c["name"] for c in md["schema_before"].value]


def test_dedup_keeps_the_latest_and_late_files_reload_the_day(corpus) -> None:
    home, _, by_day, _ = corpus
    day = {k.name: d for d, k in by_day.items()}
    late = home / "landing" / "events" / day["clean"] / "late.csv"
    late.write_bytes(b"id,name,amount,ts\n9,late,9,2024-01-01 13:00:00\n")
    dedup = load_config_from(str(write_config(home / "dedup.toml", dedup=True)), home=home)
    start, end = sorted([day["clean"], day["duplicate key"]])
    dumped = materialize_range(dedup, start, end)
    assert check_results(dumped)["key_unique"] is True
    result = published(dedup, start, end, dumped)
    deduplicated = {
        m.partition: m.metadata["rows_deduplicated"].value for m in materializations(result, "events")
    }
    assert deduplicated[day["duplicate key"]] == 1  # each partition carries its own count
    assert sum(deduplicated.values()) == 1
    t = read_table(Path(dedup.output_path) / "events").to_table().to_pylist()
    kept = [r["name"] for r in t if str(r["event_date"]) == day["duplicate key"]]
    assert kept == ["new"]  # dedup_order_by = ts: the later row wins
    assert sorted(r["id"] for r in t if str(r["event_date"]) == day["clean"]) == [1, 2, 3, 9]
    raw_md = materializations(dumped, "raw/events")[0].metadata
    assert raw_md["late_files"].value == {day["clean"]: ["late.csv"]}


def test_evolution_fail_refuses_before_spark(tmp_path: Path) -> None:
    write_corpus(tmp_path / "landing")
    loaded = load_config_from(str(write_config(tmp_path / "c.toml", evolution="fail")), home=tmp_path)
    result = materialize_range(loaded, day_of(1), day_of(1))
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message
    assert "columns the design lacks (note in 2024-01-02/d.csv)" in message
    assert 'evolution = "fail"' in message
