"""Catalog metadata from config to the UI: owners, tags, glossary terms, column schema with tags;
and the governance config keys, whose typos and bad values stay errors."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.metadata.external_metadata import metadata_map_from_external

from dp_assets.catalog import enrich_schema, glossary_tag_key
from dp_assets.config.loader import (
    PACKAGED,
    ConfigError,
    LoadedConfig,
    Provenance,
    load_config_from,
    parse_config,
)
from dp_assets.definitions import build_definitions
from dp_assets.stages.dump import SENSITIVE_CHECK
from dp_assets_tests.conftest import packaged_text

DAGSTER_TAG_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
OWNERS = ["flight-data@nycflights13.example", "team:flight-ops"]


DUMP, LOAD = dg.AssetKey(["raw", "flights"]), dg.AssetKey("flights")


def flights_defs() -> tuple[dg.Definitions, dg.AssetsDefinition]:
    """The definitions, and the multi-asset holding flights' dump and load (every table's, in fact)."""
    defs = build_definitions(load_config_from(PACKAGED))
    return defs, defs.resolve_assets_def(LOAD)


def test_dump_and_load_carry_owners_tags_and_glossary_terms_from_config() -> None:
    _, asset = flights_defs()
    for key in (DUMP, LOAD):
        assert asset.owners_by_key[key] == OWNERS
        tags = asset.tags_by_key[key]
        assert {k: tags[k] for k in ("domain", "tier", "source")} == {
            "domain": "aviation",
            "tier": "bronze",
            "source": "faa-bts",
        }
        assert tags["glossary/Aviation.Flight"] == "" and tags["glossary/Domain.Operations"] == ""
        metadata = asset.metadata_by_key[key]
        assert metadata["glossary_terms"].data == ["Aviation.Flight", "Domain.Operations"]
        assert metadata["sensitive_columns"].data == ["tailnum"]
        assert metadata["column_glossary_terms"].data["tailnum"] == [
            "Aviation.TailNumber",
            "Classification.Sensitive",
        ]
    dump_checks = [s for s in asset.check_specs if s.asset_key == DUMP]
    assert {s.key.name for s in dump_checks} == {
        "no_duplicate_delivery",
        "files_as_declared",
        SENSITIVE_CHECK,
    }
    assert next(s for s in dump_checks if s.key.name == SENSITIVE_CHECK).blocking


def test_column_schema_has_descriptions_constraints_and_column_tags() -> None:
    _, asset = flights_defs()
    schema = asset.metadata_by_key[LOAD]["dagster/column_schema"]
    cols = {c.name: c for c in schema.columns}
    tailnum = cols["tailnum"]
    assert tailnum.description.startswith("plane tail number")
    assert tailnum.tags == {
        "pii": "indirect",
        "glossary/Aviation.TailNumber": "",
        "glossary/Classification.Sensitive": "",
    }
    assert cols["origin"].tags == {"glossary/Aviation.Airport": ""}
    assert cols["origin"].constraints.nullable is False
    assert cols["origin"].constraints.other == ["part of the key (year, month, day, carrier, flight, origin)"]
    assert cols["dep_delay"].constraints.nullable is True and cols["dep_delay"].tags == {}
    assert schema.constraints.other == ["unique key: year, month, day, carrier, flight, origin"]
    assert [c.name for c in schema.columns][-3:] == ["row_hash", "load_date", "flight_date"]


def test_reported_schema_keeps_the_design_metadata() -> None:
    """The Spark job reports names, types and descriptions; the load adds tags and constraints back."""
    reported = metadata_map_from_external(
        {
            "dagster/column_schema": {
                "type": "table_schema",
                "raw_value": {
                    "columns": [
                        {"name": "tailnum", "type": "string", "description": "plane tail number"},
                        {"name": "gate", "type": "string", "description": "evolved: added from a delivery"},
                    ]
                },
            }
        }
    )["dagster/column_schema"]
    table = load_config_from(PACKAGED).config.tables["flights"]
    schema = enrich_schema(reported, table)
    tailnum, gate = schema.columns
    assert tailnum.tags["glossary/Classification.Sensitive"] == "" and tailnum.description.startswith("plane")
    assert gate.tags == {} and gate.description == "evolved: added from a delivery"


def test_glossary_terms_become_valid_tag_keys() -> None:
    long_a, long_b = "Business Glossary/" + "a" * 80, "Business Glossary/" + "a" * 79 + "b"
    for term in ("Classification.Sensitive", "PII: Email address", long_a, "Ünïcode term"):
        assert DAGSTER_TAG_KEY.match(glossary_tag_key(term)), term
    assert glossary_tag_key("PII: Email address") == "glossary/PII_Email_address"
    assert glossary_tag_key(long_a) != glossary_tag_key(long_b)
    text = packaged_text().replace(
        'glossary_terms = ["Aviation.Flight", "Domain.Operations"]', f'glossary_terms = ["{long_a}"]'
    )
    loaded = LoadedConfig(
        config=parse_config(text.encode(), "long.toml"),
        provenance=Provenance(source="file", uri="long.toml", sha256="0" * 64),
        dp_home=Path("/tmp"),
    )
    tags = next(iter(build_definitions(loaded).resolve_assets_def("flights").tags_by_key.values()))
    assert glossary_tag_key(long_a) in tags  # Dagster accepted it


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        (
            'scan = { action = "isolate" }',
            'scan = { acton = "isolate" }',
            "tables.flights.scan.acton: unknown key",
        ),
        ('scan = { action = "isolate" }', 'scan = { action = "drop" }', "tables.flights.scan.action"),
        ('scan = { action = "isolate" }', "scan = { sample_rows = 0 }", "tables.flights.scan.sample_rows"),
        ("sensitive = true,", "sensitve = true,", "sensitve: unknown key"),
        ('owners = ["flight-data', 'owners = ["flight data', "must be email addresses or 'team:<name>'"),
        ('domain = "aviation"', '"has space" = "aviation"', "tag key 'has space'"),
        ('domain = "aviation"', '"dagster/x" = "aviation"', "namespaces are reserved"),
        ('tier = "bronze"', 'tier = "' + "x" * 64 + '"', "must be at most 63"),
        ('pii = "indirect"', 'pii = "in direct"', "tag 'pii'"),
    ],
)
def test_bad_governance_config_is_an_error(replace: str, by: str, message: str) -> None:
    text = packaged_text()
    assert replace in text
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text.replace(replace, by, 1).encode(), "bad.toml")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[governance]\nseverty = {}\n", "governance.severty: unknown key"),
        ('[governance]\nseverity = { passport = "high" }\n', "not managed identifiers"),
        ('[governance]\nseverity = { email = "critical" }\n', "governance.severity.email"),
        ('[governance]\nhash_key_env = "abc=s3cret"\n', "NAME of the environment variable"),
        ('[openlineage]\nurl_env = "http://marquez:5000/api/v1/lineage"\n', "holding the endpoint URL"),
        ('[openlineage]\nurl = "DP_OPENLINEAGE_URL"\n', "openlineage.url: unknown key"),
        (
            '[[governance.custom_identifiers]]\nname = "x"\nregex = "(?<=a)b"\nkeywords = ["x"]\n',
            "not a valid RE2 regular expression",
        ),
        (
            '[[governance.custom_identifiers]]\nname = "email"\nregex = "a"\nkeywords = ["x"]\n',
            "'email' is a managed identifier",
        ),
        ('[[governance.custom_identifiers]]\nname = "x"\nregex = "a"\nkeywords = []\n', "keywords"),
        (
            '[[governance.custom_identifiers]]\nname = "x"\nregex = "a"\nkeywords = ["x"]\nlevel = "high"\n',
            "governance.custom_identifiers.0.level: unknown key",
        ),
    ],
)
def test_bad_governance_section_is_an_error(section: str, message: str) -> None:
    text = packaged_text().replace("[spark]\n", section + "\n[spark]\n", 1)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text.encode(), "bad.toml")
