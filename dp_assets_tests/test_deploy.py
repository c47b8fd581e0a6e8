"""`dp deploy` against a moto S3 server over HTTP: the release layout and manifest, the alias, the
pinned URI that loads the release (config and SQL), a dry run that writes nothing, and refusals."""

from __future__ import annotations

import hashlib
import json
import zipfile
from io import BytesIO

import boto3
import pytest

from dp_assets.cli import main
from dp_assets.config.loader import load_config_from

ENV, PIPELINE = "preprod", "nycflights13"


def keys(bucket: str, prefix: str = "") -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def body(bucket: str, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_release_layout_manifest_alias_and_pinned_uri(versioned_bucket: str, capsys) -> None:
    args = ["deploy", "--env", ENV, "--bucket", versioned_bucket, "--deployment-id", "r1", "--note", "first"]
    assert main(args) == 0
    out = capsys.readouterr().out
    release = f"{ENV}/{PIPELINE}/releases/r1"
    assert keys(versioned_bucket, release) == sorted(
        f"{release}/{k}"
        for k in (
            "config.toml",
            "manifest.json",
            "spark_jobs.zip",
            "spark_jobs/load_table.py",
            "spark_jobs/log4j2.properties",
            "spark_jobs/pipes_bootstrap.py",
            "spark_jobs/transform_table.py",
            "transforms/daily_carrier_delays.sql",
        )
    )
    manifest = json.loads(body(versioned_bucket, f"{release}/manifest.json"))
    assert manifest["deployment_id"] == "r1" and manifest["note"] == "first" and manifest["env"] == ENV
    assert len(manifest["git_commit"] or "0" * 40) == 40 and manifest["created_at"]
    for key, entry in manifest["files"].items():  # every file's sha256, as uploaded
        assert hashlib.sha256(body(versioned_bucket, f"{release}/{key}")).hexdigest() == entry["sha256"], key
    with zipfile.ZipFile(BytesIO(body(versioned_bucket, f"{release}/spark_jobs.zip"))) as zf:
        assert {"load_table.py", "pipes_bootstrap.py", "transform_table.py"} <= set(zf.namelist())
    alias = f"{ENV}/{PIPELINE}/config.toml"
    assert body(versioned_bucket, alias) == body(versioned_bucket, f"{release}/config.toml")

    pinned = out.split("CONFIG_S3_URI='")[1].split("'")[0]
    assert pinned.startswith(f"s3://{versioned_bucket}/{release}/config.toml?versionId=")
    loaded = load_config_from(pinned)
    assert loaded.provenance.deployment_id == "r1" and loaded.provenance.version_id
    assert [k.rsplit("/", 1)[1] for k in loaded.sql_files] == ["daily_carrier_delays.sql"]  # from the release


def test_releases_are_immutable(versioned_bucket: str, capsys) -> None:
    args = ["deploy", "--env", ENV, "--bucket", versioned_bucket, "--deployment-id", "same"]
    assert main(args) == 0
    assert main(args) == 1
    assert "already exists: releases are immutable" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_writes_nothing(versioned_bucket: str, capsys) -> None:
    assert (
        main(["deploy", "--env", ENV, "--bucket", versioned_bucket, "--dry-run", "--deployment-id", "d"]) == 0
    )
    out = capsys.readouterr().out
    assert f"release s3://{versioned_bucket}/{ENV}/{PIPELINE}/releases/d/" in out
    assert "spark_jobs.zip" in out and "dry run: nothing was written" in out
    assert keys(versioned_bucket) == []


def test_unversioned_bucket_is_refused_with_the_fix(aws: str, capsys) -> None:
    boto3.client("s3").create_bucket(Bucket="plain-bucket")
    assert main(["deploy", "--env", ENV, "--bucket", "plain-bucket"]) == 1
    err = capsys.readouterr().err
    assert "versioning never enabled" in err and "put-bucket-versioning --bucket plain-bucket" in err
    assert keys("plain-bucket") == []


@pytest.mark.parametrize("env", ["staging", "qa"])
def test_unknown_env_is_refused(env: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["deploy", "--env", env, "--bucket", "b"])
    assert "invalid choice" in capsys.readouterr().err
