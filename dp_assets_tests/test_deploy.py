"""`dp deploy` against a moto S3 server over HTTP: the release layout and manifest, the alias, the
pinned URI that loads the release (config and SQL), a dry run that writes nothing, and refusals."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import boto3
import pytest

from dp_assets.cli import main
from dp_assets.config.loader import load_config_from
from dp_assets.deploy import spark_jobs_zip
from dp_assets.launchers.base import SHIPPED_SUFFIXES, spark_jobs_dir

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
            "job_env-x86_64.zip",
            "job_env-aarch64.zip",
            *(
                f"spark_jobs/{p.name}"
                for p in spark_jobs_dir().iterdir()
                if p.suffix in SHIPPED_SUFFIXES and p.name != "__init__.py"  # entry points: the zip has it
            ),
            "transforms/daily_carrier_delays.sql",
        )
    )
    manifest = json.loads(body(versioned_bucket, f"{release}/manifest.json"))
    assert manifest["deployment_id"] == "r1" and manifest["note"] == "first" and manifest["env"] == ENV
    assert len(manifest["git_commit"] or "0" * 40) == 40 and manifest["created_at"]
    for key, entry in manifest["files"].items():  # every file's sha256, as uploaded
        assert hashlib.sha256(body(versioned_bucket, f"{release}/{key}")).hexdigest() == entry["sha256"], key
    with zipfile.ZipFile(BytesIO(body(versioned_bucket, f"{release}/spark_jobs.zip"))) as zf:
        shipped = set(zf.namelist())
    assert {"spark_jobs/run_pipeline.py", "spark_jobs/contract.py", "dagster_pipes/__init__.py"} <= shipped
    for architecture, elf_machine in (("x86_64", 62), ("aarch64", 183)):  # EM_X86_64, EM_AARCH64
        with zipfile.ZipFile(BytesIO(body(versioned_bucket, f"{release}/job_env-{architecture}.zip"))) as zf:
            unpacked = {n.split("/", 1)[0] for n in zf.namelist()}
            libraries = [n for n in zf.namelist() if n.endswith(".so") or ".so." in n]
            machines = {int.from_bytes(zf.read(n)[18:20], "little") for n in libraries}
        assert {"pyarrow", "numpy"} <= unpacked  # the dump's packages, for the cluster's Python 3.11
        assert libraries and machines == {elf_machine}, (architecture, machines)  # built for that CPU
    alias = f"{ENV}/{PIPELINE}/config.toml"
    assert body(versioned_bucket, alias) == body(versioned_bucket, f"{release}/config.toml")

    pinned = out.split("CONFIG_S3_URI='")[1].split("'")[0]
    assert pinned.startswith(f"s3://{versioned_bucket}/{release}/config.toml?versionId=")
    loaded = load_config_from(pinned)
    assert loaded.provenance.deployment_id == "r1" and loaded.provenance.version_id
    assert [k.rsplit("/", 1)[1] for k in loaded.sql_files] == ["daily_carrier_delays.sql"]  # from the release


def test_jobs_zip_carries_dagster_pipes_for_a_bare_interpreter(tmp_path) -> None:
    """EMR images have pyspark and boto3 but not dagster-pipes: the zip alone must provide it."""
    bundle = tmp_path / "spark_jobs.zip"
    bundle.write_bytes(spark_jobs_zip(spark_jobs_dir()))
    assert spark_jobs_zip(spark_jobs_dir()) == bundle.read_bytes()  # reproducible
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import dagster_pipes; print(dagster_pipes.__file__)"
    # -I -S: no site-packages, no environment — only the zip can provide the module.
    found = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(bundle)], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip().startswith(str(bundle))


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


def emr_config(tmp_path, chain: str = "") -> str:
    from dp_assets_tests.conftest import packaged_text

    text = packaged_text().replace('input_path = "landing"', 'input_path = "s3://dp-landing/drops"')
    text = text.replace('output_path = "lake"', 'output_path = "s3://dp-lake/nycflights13"')
    text += """
[spark.emr]
messages_uri = "s3://dp-pipes/runs"
log_uri = "s3://dp-logs/emr/"
region = "eu-west-2"
cluster_id = "j-2AXXXXXXGAPLF"
application_id = "00fabcdefg123456"
execution_role_arn = "arn:aws:iam::123456789012:role/dp-job"
"""
    path = tmp_path / "config.toml"
    path.write_text(text + (f"\n[aws]\nrole_chain = {chain}\n" if chain else ""))
    return str(path)


def iam_policies(config: str, launcher: str, capsys) -> dict:
    args = ["deploy", "--env", "prod", "--config", config, "--bucket", "dp-releases"]
    assert main([*args, "--print-iam-policy", launcher]) == 0
    return json.loads(capsys.readouterr().out)


def statement(document: dict, sid: str) -> dict:
    return next(s for s in document["Statement"] if s["Sid"] == sid)


@pytest.mark.parametrize("launcher", ["emr", "emr-existing", "emr-serverless"])
def test_iam_policies_are_valid_and_scoped_to_the_config(launcher: str, aws: str, tmp_path, capsys) -> None:
    docs = iam_policies(emr_config(tmp_path), launcher, capsys)
    assert set(docs) == {"orchestrator", "job"}
    for name, document in docs.items():  # moto's IAM validates the grammar of a policy document
        boto3.client("iam").create_policy(
            PolicyName=f"dp-{launcher}-{name}", PolicyDocument=json.dumps(document)
        )
    orchestrator, job = docs["orchestrator"], docs["job"]
    s3_resources = [
        r
        for d in docs.values()
        for s in d["Statement"]
        if s["Action"][0].startswith("s3:")
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert "*" not in s3_resources and all(r.startswith("arn:aws:s3:::dp-") for r in s3_resources)
    assert statement(job, "ReleaseObjects")["Resource"] == [
        "arn:aws:s3:::dp-releases/prod/nycflights13/releases/*"
    ]
    assert statement(orchestrator, "LandingObjects")["Action"] == ["s3:GetObject"]  # landing is read-only
    assert "s3:PutObject" in statement(job, "LakeObjects")["Action"]
    if launcher == "emr-existing":
        shared = statement(orchestrator, "StepsOnSharedCluster")
        assert shared["Resource"] == "arn:aws:elasticmapreduce:eu-west-2:*:cluster/j-2AXXXXXXGAPLF"
        assert "elasticmapreduce:TerminateJobFlows" not in shared["Action"]  # never the shared cluster
        assert "elasticmapreduce:ListInstances" in shared["Action"]  # its nodes' CPU, for a dump
    if launcher == "emr-serverless":
        passed = statement(orchestrator, "PassExecutionRole")
        assert passed["Resource"] == "arn:aws:iam::123456789012:role/dp-job"


def test_iam_policies_with_a_role_chain_move_data_access_to_its_last_role(aws: str, tmp_path, capsys) -> None:
    hop, reader = "arn:aws:iam::111111111111:role/dp-hop", "arn:aws:iam::222222222222:role/dp-reader"
    docs = iam_policies(emr_config(tmp_path, f'["{hop}", "{reader}"]'), "emr", capsys)
    assert list(docs) == ["orchestrator", "job", f"role_chain {hop}", f"role_chain {reader}"]
    assert statement(docs["orchestrator"], "NextHopOfRoleChain")["Resource"] == hop
    assert statement(docs[f"role_chain {hop}"], "NextHopOfRoleChain")["Resource"] == reader
    assert {s["Sid"] for s in docs[f"role_chain {reader}"]["Statement"]} >= {"LandingObjects", "LakeObjects"}
    assert not any(s["Sid"].startswith(("Landing", "Lake")) for s in docs["orchestrator"]["Statement"])


def test_iam_policy_for_local_is_refused(capsys) -> None:
    assert main(["deploy", "--env", "prod", "--bucket", "b", "--print-iam-policy"]) == 1
    assert "the local launcher needs no IAM policy" in capsys.readouterr().err


def test_iam_policies_cover_the_secondary_lake_and_catalog_database(aws: str, tmp_path, capsys) -> None:
    config = Path(emr_config(tmp_path))
    config.write_text(
        config.read_text() + '\n[secondary]\nname = "preprod"\noutput_path = "s3://dp-preprod-lake/flights"\n'
    )
    job = iam_policies(str(config), "emr", capsys)["job"]
    lake = statement(job, "LakeObjects")["Resource"]
    assert any(r.startswith("arn:aws:s3:::dp-preprod-lake/flights") for r in lake), lake
    glue = statement(job, "GlueCatalog")
    assert {"glue:UpdatePartition", "glue:BatchUpdatePartition"} <= set(glue["Action"])  # SET LOCATION
    assert "arn:aws:glue:*:*:table/nycflights13_preprod/*" in glue["Resource"]
    assert "arn:aws:glue:*:*:table/nycflights13/*" in glue["Resource"]
