"""The policies `dp deploy --print-iam-policy` prints work when used: each document is attached to an
IAM user of a separate moto server that enforces IAM, and that user's keys do what the principal
does (the orchestrator loads the pinned config and its SQL from the release, the job reads the
release) and are refused what the document leaves out.

What moto 5.x enforces: the action and the resource ARN of every S3 call (bucket ARN for listing,
object ARN for reads and writes; GetObject with a VersionId is s3:GetObjectVersion, as on AWS), and
the action of control-plane calls. What it cannot: condition keys other than StringEquals, and it
passes no s3:prefix to a ListBucket check, so listing is scoped to the bucket only here (the
printed `s3:prefix` condition is checked as text); EMR calls are authorized against Resource "*",
so statements scoped to a cluster or application ARN are not exercised (RunJobFlow, granted on "*",
is); iam:PassRole is not checked by moto's RunJobFlow.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dp_assets.cli import main
from dp_assets.config.loader import ConfigError, load_config_from
from dp_assets.launchers.emr import read_logs
from dp_assets_tests.conftest import PACKAGED_CONFIG
from spark_jobs.contract import RUN_SCRIPT
from spark_jobs.storage import store_for

REGION = "us-east-1"
RELEASES, RELEASE_ID = "dp-releases", "r1"
RELEASE = f"prod/nycflights13/releases/{RELEASE_ID}"
BUCKETS = ("dp-landing", "dp-lake", "dp-pipes", "dp-logs", "dp-other")
# Requests moto serves before it enforces IAM: exactly the admin's bootstrap (user, policy, key).
BOOTSTRAP_REQUESTS = 3
LAUNCHERS = ["emr", "emr-existing", "emr-serverless"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def iam_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto server in its own process (IAM enforcement is process-wide in moto, so the shared
    session server stays as it is) that authorizes every request after the bootstrap: the endpoint
    and an admin's keys."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto_iam") / "server.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_REQUESTS)}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:  # a TCP probe, not an HTTP request: it does not use up a bootstrap request
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        endpoint = f"http://127.0.0.1:{port}"
        iam = client("iam", endpoint, {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "x"})
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(ADMIN))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        with pytest.raises(ClientError) as refused:  # from here on, keys must be known and allowed
            iam.list_users()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        yield {
            "endpoint": endpoint,
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def client(service: str, endpoint: str, keys: dict[str, str]) -> Any:
    creds = {k: v for k, v in keys.items() if k.startswith("aws_")}
    return boto3.session.Session(region_name=REGION, **creds).client(service, endpoint_url=endpoint)


def acting_as(mp: pytest.MonkeyPatch, endpoint: str, keys: dict[str, str]) -> None:
    """The process's AWS identity and endpoint (what the loader's `boto3.client("s3")` and the
    stores' sessions use) are `keys` on the enforcing server."""
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    mp.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    mp.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    mp.delenv("AWS_SESSION_TOKEN", raising=False)
    mp.setattr(boto3, "DEFAULT_SESSION", None)


def emr_config(folder: Path) -> str:
    """The packaged demo config with its transforms/ beside it, on S3 buckets, with [spark.emr]."""
    text = PACKAGED_CONFIG.read_text()
    text = text.replace('input_path = "landing"', 'input_path = "s3://dp-landing/drops"')
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
    shutil.copytree(PACKAGED_CONFIG.parent / "transforms", folder / "transforms")
    (folder / "config.toml").write_text(text)
    return str(folder / "config.toml")


@pytest.fixture(scope="module")
def release(iam_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`dp deploy` (the CLI) as the admin: the buckets, one release, and the pinned CONFIG_S3_URI."""
    endpoint, admin = iam_server["endpoint"], iam_server
    s3 = client("s3", endpoint, admin)
    s3.create_bucket(Bucket=RELEASES)
    s3.put_bucket_versioning(Bucket=RELEASES, VersioningConfiguration={"Status": "Enabled"})
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
    seeded = {
        "dp-landing": ["drops/flights/2013-01-01/flights.csv", "elsewhere/secret.csv"],
        "dp-lake": ["nycflights13/flights/day=2013-01-01/part-0.parquet"],
        "dp-logs": ["emr/j-1/steps/s-1/stdout", "emr/j-1/steps/s-1/stderr"],
        "dp-other": ["data.csv"],
    }
    for bucket, keys in seeded.items():
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=b"seeded " + key.encode())
    config = emr_config(tmp_path_factory.mktemp("config"))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        acting_as(mp, endpoint, admin)
        assert (
            main(
                [
                    "deploy",
                    "--env",
                    "prod",
                    "--config",
                    config,
                    "--bucket",
                    RELEASES,
                    "--deployment-id",
                    RELEASE_ID,
                ]
            )
            == 0
        )
    pinned = out.getvalue().split("CONFIG_S3_URI='")[1].split("'")[0]
    assert pinned.startswith(f"s3://{RELEASES}/{RELEASE}/config.toml?versionId=")
    return {"config": config, "pinned": pinned}


def printed_policies(config: str, launcher: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    args = ["deploy", "--env", "prod", "--config", config, "--bucket", RELEASES]
    assert main([*args, "--print-iam-policy", launcher]) == 0
    return json.loads(capsys.readouterr().out)


def user_with(iam_server: dict[str, str], name: str, document: dict[str, Any]) -> dict[str, str]:
    """An IAM user holding exactly `document` (moto validates its grammar); its access keys."""
    iam = client("iam", iam_server["endpoint"], iam_server)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="printed", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def denied(call: Callable[[], object]) -> None:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    # moto answers EMR's JSON protocol with its XML error: Code "403", AccessDenied in the message.
    assert error["Code"] == "AccessDenied" or "<Code>AccessDenied</Code>" in error.get("Message", ""), error


def version_of_pinned(pinned: str) -> str:
    return pinned.split("?versionId=")[1]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_orchestrator_policy_works_when_used(
    launcher: str,
    iam_server: dict[str, str],
    release: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = iam_server["endpoint"]
    document = printed_policies(release["config"], launcher, capsys)["orchestrator"]
    keys = user_with(iam_server, f"orchestrator-{launcher}", document)
    acting_as(monkeypatch, endpoint, keys)
    s3 = client("s3", endpoint, keys)
    session = boto3.session.Session(region_name=REGION, **keys)

    # Start-up: the code location loads the pinned config (GetObjectVersion) and lists and reads the
    # release's transforms/ — through the real loader, as the process's AWS identity.
    loaded = load_config_from(release["pinned"])
    assert loaded.provenance.deployment_id == RELEASE_ID
    assert loaded.provenance.version_id == version_of_pinned(release["pinned"])
    assert list(loaded.sql_files) == [f"s3://{RELEASES}/{RELEASE}/transforms/daily_carrier_delays.sql"]

    # The Pipes transport: the context is written, messages listed and read, the context deleted.
    pipes = store_for("s3://dp-pipes/runs", session)
    with pipes.open_write("context/run-1.json") as f:
        f.write(b"{}")
    assert [f.path for f in pipes.list("context")] == ["context/run-1.json"]
    with pipes.open_read("context/run-1.json") as f:
        assert f.read() == b"{}"
    pipes.delete("context/run-1.json")
    # The step logs, read-only.
    assert set(read_logs(s3, "s3://dp-logs/emr/j-1/steps/s-1/")) == {"stdout", "stderr"}
    denied(lambda: s3.put_object(Bucket="dp-logs", Key="emr/j-1/steps/s-1/stdout", Body=b"x"))
    # The dump: the landing zone read-only, the lake read/write.
    landing = store_for("s3://dp-landing/drops", session)
    assert [f.path for f in landing.list("flights")] == ["flights/2013-01-01/flights.csv"]
    with landing.open_read("flights/2013-01-01/flights.csv") as f:
        assert f.read().startswith(b"seeded")
    denied(lambda: s3.put_object(Bucket="dp-landing", Key="drops/flights/x.csv", Body=b"x"))
    denied(lambda: s3.delete_object(Bucket="dp-landing", Key="drops/flights/2013-01-01/flights.csv"))
    lake = store_for("s3://dp-lake/nycflights13", session)
    with lake.open_write(f"_staging/{launcher}/part-0.parquet") as f:
        f.write(b"rows")
    assert lake.exists(f"_staging/{launcher}/part-0.parquet")
    lake.delete(f"_staging/{launcher}/part-0.parquet")

    # Denied: anything but reading the release, and anything outside the config's prefixes.
    denied(lambda: s3.put_object(Bucket=RELEASES, Key=f"{RELEASE}/config.toml", Body=b"x"))
    denied(lambda: s3.delete_object(Bucket=RELEASES, Key=f"{RELEASE}/config.toml"))
    denied(lambda: s3.get_object(Bucket=RELEASES, Key="prod/nycflights13/config.toml"))  # the alias
    denied(lambda: s3.get_object(Bucket="dp-landing", Key="elsewhere/secret.csv"))
    denied(lambda: s3.get_object(Bucket="dp-other", Key="data.csv"))
    denied(lambda: s3.list_objects_v2(Bucket="dp-other"))
    denied(lambda: s3.put_bucket_versioning(Bucket=RELEASES, VersioningConfiguration={"Status": "Suspended"}))
    # moto passes no s3:prefix to ListBucket checks: the listing's prefix condition is checked as text.
    listing = next(s for s in document["Statement"] if s["Sid"] == "ReleaseList0")
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["prod/nycflights13/releases", "prod/nycflights13/releases/*"]}
    }

    # The control plane: moto checks EMR actions against Resource "*", so only RunJobFlow (granted on
    # "*" for the transient cluster) can be shown allowed; an action no launcher uses is refused.
    emr = client("emr", endpoint, keys)
    if launcher == "emr":
        emr.run_job_flow(
            Name="dp",
            ReleaseLabel="emr-7.5.0",
            Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1},
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )
    denied(lambda: emr.list_clusters())


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_job_policy_works_when_used(
    launcher: str,
    iam_server: dict[str, str],
    release: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = iam_server["endpoint"]
    document = printed_policies(release["config"], launcher, capsys)["job"]
    keys = user_with(iam_server, f"job-{launcher}", document)
    acting_as(monkeypatch, endpoint, keys)
    s3 = client("s3", endpoint, keys)

    # spark-submit fetches the release's zip and entry script by key (never by version).
    zipped = s3.get_object(Bucket=RELEASES, Key=f"{RELEASE}/spark_jobs.zip")["Body"].read()
    assert zipped.startswith(b"PK")
    s3.head_object(Bucket=RELEASES, Key=f"{RELEASE}/spark_jobs/{RUN_SCRIPT}")
    # The Pipes transport: the job reads its context and writes its messages.
    s3.put_object(Bucket="dp-pipes", Key="runs/messages/1.json", Body=b"{}")
    s3.get_object(Bucket="dp-pipes", Key="runs/messages/1.json")
    # The lake: read, list, write, delete (Spark's committers rename by copy and delete).
    lake = store_for("s3://dp-lake/nycflights13", boto3.session.Session(region_name=REGION, **keys))
    assert "flights/day=2013-01-01/part-0.parquet" in [f.path for f in lake.list("flights")]
    with lake.open_write(f"flights/day=2013-01-02/{launcher}.parquet") as f:
        f.write(b"rows")
    lake.delete(f"flights/day=2013-01-02/{launcher}.parquet")
    if launcher == "emr-serverless":  # Serverless writes the driver's logs as the job's role
        s3.put_object(Bucket="dp-logs", Key="emr/applications/x/stdout.gz", Body=b"x")
    else:
        denied(lambda: s3.put_object(Bucket="dp-logs", Key="emr/applications/x/stdout.gz", Body=b"x"))

    # Denied: writing the release, reading the landing zone (the dump's job), other buckets, and
    # versions (the job never reads by VersionId, so it does not get s3:GetObjectVersion).
    denied(lambda: s3.put_object(Bucket=RELEASES, Key=f"{RELEASE}/spark_jobs.zip", Body=b"x"))
    denied(lambda: s3.delete_object(Bucket=RELEASES, Key=f"{RELEASE}/spark_jobs.zip"))
    denied(lambda: s3.get_object(Bucket="dp-landing", Key="drops/flights/2013-01-01/flights.csv"))
    denied(lambda: s3.get_object(Bucket="dp-other", Key="data.csv"))
    version = version_of_pinned(release["pinned"])
    denied(lambda: s3.get_object(Bucket=RELEASES, Key=f"{RELEASE}/config.toml", VersionId=version))
    with pytest.raises(ConfigError, match="access denied"):
        load_config_from(release["pinned"])


def test_orchestrator_keeps_its_release_read_with_a_role_chain(
    release: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config is loaded with the run's own credentials, before any hop is assumed."""
    config = tmp_path / "config.toml"
    config.write_text(
        Path(release["config"]).read_text()
        + '\n[aws]\nrole_chain = ["arn:aws:iam::111111111111:role/dp-data"]\n'
    )
    shutil.copytree(Path(release["config"]).parent / "transforms", tmp_path / "transforms")
    orchestrator = printed_policies(str(config), "emr", capsys)["orchestrator"]
    objects = next(s for s in orchestrator["Statement"] if s["Sid"] == "ReleaseObjects")
    assert objects["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert objects["Resource"] == [f"arn:aws:s3:::{RELEASES}/prod/nycflights13/releases/*"]
