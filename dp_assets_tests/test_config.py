"""Config loading: precedence, provenance from a versioned S3 bucket, and every named pitfall."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest
import requests

from dp_assets.config.loader import ConfigError, config_source, load_config, load_config_from, parse_config
from dp_assets_tests.conftest import PACKAGED_CONFIG, packaged_text


def put_config(bucket: str, key: str, text: str) -> dict:
    return boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())


def test_packaged_is_the_default_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    loaded = load_config()
    assert loaded.provenance.source == "packaged"
    assert loaded.provenance.sha256 == hashlib.sha256(PACKAGED_CONFIG.read_bytes()).hexdigest()
    assert "using the config.toml packaged" in caplog.text
    assert "flights" in loaded.config.tables


def test_relative_paths_resolve_under_dp_home(isolated_home: Path) -> None:
    loaded = load_config()
    assert loaded.input_path == str(isolated_home / "landing")
    assert loaded.resolved_dict()["general"]["output_path"] == str(isolated_home / "lake")


def test_precedence_flag_over_env_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert config_source() == "packaged"
    (tmp_path / ".env").write_text("CONFIG_S3_URI=s3://from-dotenv/config.toml\n")
    assert config_source() == "s3://from-dotenv/config.toml"
    monkeypatch.setenv("CONFIG_S3_URI", "s3://from-env/config.toml")
    assert config_source() == "s3://from-env/config.toml"
    assert config_source("s3://from-flag/config.toml") == "s3://from-flag/config.toml"


def test_s3_pinned_version_records_provenance(versioned_bucket: str) -> None:
    first = put_config(versioned_bucket, "prod/nycflights13/config.toml", packaged_text())
    put_config(
        versioned_bucket,
        "prod/nycflights13/config.toml",
        packaged_text().replace("max_partitions = 400", "max_partitions = 10"),
    )
    uri = f"s3://{versioned_bucket}/prod/nycflights13/config.toml"

    latest = load_config_from(uri)
    assert latest.config.processing.max_partitions == 10

    pinned = load_config_from(f"{uri}?versionId={first['VersionId']}")
    assert pinned.config.processing.max_partitions == 400
    assert pinned.provenance.source == "s3"
    assert pinned.provenance.version_id == first["VersionId"]
    assert pinned.provenance.etag == first["ETag"].strip('"')
    assert pinned.provenance.sha256 == hashlib.sha256(packaged_text().encode()).hexdigest()


def test_env_var_selects_s3_and_release_folder_gives_deployment_id(
    versioned_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "dev/nycflights13/releases/2026-11-23-abc123/config.toml"
    put_config(versioned_bucket, key, packaged_text())
    monkeypatch.setenv("CONFIG_S3_URI", f"s3://{versioned_bucket}/{key}")
    loaded = load_config()
    assert loaded.provenance.source == "s3"
    assert loaded.provenance.deployment_id == "2026-11-23-abc123"


def test_doubled_s3_prefix_is_named() -> None:
    with pytest.raises(ConfigError, match="s3:// prefix is given twice"):
        load_config_from("s3://s3://bucket/config.toml")


def test_missing_bucket_and_key_are_named(versioned_bucket: str) -> None:
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        load_config_from("s3://no-such-bucket/config.toml")
    with pytest.raises(ConfigError, match=r"no object at key 'missing/config\.toml'"):
        load_config_from(f"s3://{versioned_bucket}/missing/config.toml")
    put_config(versioned_bucket, "c.toml", packaged_text())
    with pytest.raises(ConfigError, match="version 'nope' of"):
        load_config_from(f"s3://{versioned_bucket}/c.toml?versionId=nope")


def test_access_denied_names_the_iam_actions(
    versioned_bucket: str, aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real IAM denial from the moto server: a user whose policy lacks s3:GetObject."""
    put_config(versioned_bucket, "c.toml", packaged_text())
    iam = boto3.client("iam")
    requests.post(f"{aws}/moto-api/reset-auth", data=b"3", timeout=10)  # the next 3 calls skip auth
    try:
        iam.create_user(UserName="reader")
        iam.put_user_policy(
            UserName="reader",
            PolicyName="list-only",
            PolicyDocument=(
                '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",'
                ' "Resource": "*"}]}'
            ),
        )
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        with pytest.raises(
            ConfigError, match=r"access denied; the caller needs s3:GetObject on arn:aws:s3:::"
        ):
            load_config_from(f"s3://{versioned_bucket}/c.toml")
        with pytest.raises(ConfigError, match=r"s3:GetObject and s3:GetObjectVersion"):
            load_config_from(f"s3://{versioned_bucket}/c.toml?versionId=x")
    finally:
        requests.post(f"{aws}/moto-api/reset-auth", data=b"inf", timeout=10)


def test_invalid_toml_gives_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[general]\npipeline_name = "x"\ninput_path = \n')
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML: .*line 3, column 14"):
        load_config_from(str(bad))


def test_unknown_key_and_wrong_type_name_key_and_file(tmp_path: Path) -> None:
    text = packaged_text().replace("max_partitions = 400", 'max_partitions = "many"\nmax_partitons = 3')
    cfg = tmp_path / "typo.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config_from(str(cfg))
    message = str(e.value)
    assert str(cfg) in message
    assert "processing.max_partitions_" not in message
    assert "processing.max_partitons: unknown key" in message
    assert "processing.max_partitions: Input should be a valid integer" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'key = ["year", "month", "day", "carrier", "flight", "origin"]',
            'key = ["nope"]',
            "key columns ['nope'] are not among the declared columns",
        ),
        (
            '{ name = "year", type = "int", nullable = false }',
            '{ name = "year", type = "integr" }',
            "unknown type 'integr'",
        ),
        ('partition_column = "flight_date"', 'partition_column = "year"', "is also a declared column"),
        ("end_date = 2013-12-31", "end_date = 2012-12-31", "is before start_date"),
    ],
)
def test_design_errors_are_named(old: str, new: str, expected: str) -> None:
    text = packaged_text()
    assert old in text
    with pytest.raises(
        ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
    ):
        parse_config(text.replace(old, new).encode(), "test.toml")


def test_missing_local_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_from(str(tmp_path / "nope.toml"))


def test_a_secondary_environment_gets_its_own_lake_and_catalog_database(isolated_home: Path) -> None:
    body = packaged_text() + '\n[secondary]\nname = "preprod"\noutput_path = "lake_preprod"\n'
    (isolated_home / "config.toml").write_text(body)
    loaded = load_config_from(str(isolated_home / "config.toml"), home=isolated_home)
    second = loaded.secondary_environment()
    assert second is not None and second.secondary_environment() is None
    assert (second.output_path, second.config.catalog_database) == (
        str(isolated_home / "lake_preprod"),
        "nycflights13_preprod",
    )
    assert (second.input_path, loaded.config.catalog_database) == (loaded.input_path, "nycflights13")

    with pytest.raises(ConfigError, match="the primary's catalog database"):
        parse_config(f'{body}catalog_database = "nycflights13"\n'.encode(), "x.toml")
    for inside in ("./lake", "lake/preprod", str(isolated_home)):  # resolved: the primary's lake, or nested
        (isolated_home / "config.toml").write_text(body.replace('"lake_preprod"', f'"{inside}"'))
        overlapping = load_config_from(str(isolated_home / "config.toml"), home=isolated_home)
        with pytest.raises(ConfigError, match="give the secondary a lake of its own"):
            overlapping.secondary_environment()
