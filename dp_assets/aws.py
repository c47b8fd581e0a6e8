"""Credentials for the data: the run's own, or those of a chain of roles assumed in turn.

A chain reaches a landing zone or lake in another account through one or more hops (the seed ADG's
pattern). botocore refreshes the credentials before they expire, so a long dump never fails on an
expired token; each refresh walks the chain again from the run's own credentials. The temporary
keys are never logged: they travel to Spark jobs only inside the Pipes context (a temp file
locally, an S3 object deleted when the session ends on EMR), never in arguments or metadata.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.session
from botocore.credentials import DeferredRefreshableCredentials

from dp_assets.config.model import Aws


def assume_chain(chain: list[str], session_name: str, duration_seconds: int) -> dict[str, Any]:
    """Assume each role with the previous role's credentials; the last role's, as botocore metadata."""
    session = boto3.Session()
    credentials: dict[str, Any] = {}
    for arn in chain:
        credentials = session.client("sts").assume_role(
            RoleArn=arn, RoleSessionName=session_name, DurationSeconds=duration_seconds
        )["Credentials"]
        session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=session.region_name,
        )
    return {
        "access_key": credentials["AccessKeyId"],
        "secret_key": credentials["SecretAccessKey"],
        "token": credentials["SessionToken"],
        "expiry_time": credentials["Expiration"].isoformat(),
    }


def data_session(aws: Aws) -> boto3.Session | None:
    """A session refreshing the role chain's credentials; None without a chain (the run's own)."""
    if not aws.role_chain:
        return None

    def refresh() -> dict[str, Any]:
        return assume_chain(aws.role_chain, aws.session_name, aws.duration_seconds)

    core = botocore.session.get_session()
    core._credentials = DeferredRefreshableCredentials(refresh, method="sts-assume-role-chain")
    return boto3.Session(botocore_session=core)


def spark_s3_credentials(session: boto3.Session | None, uris: list[str]) -> dict[str, dict[str, str]]:
    """Per bucket of the s3:// URIs, the current temporary keys for a Spark job (empty without a chain).

    Spark cannot refresh them, so a job must finish within the chain's duration_seconds."""
    buckets = sorted({u.removeprefix("s3://").split("/", 1)[0] for u in uris if u.startswith("s3://")})
    if session is None or not buckets:
        return {}
    frozen = session.get_credentials().get_frozen_credentials()
    keys = {"access_key": frozen.access_key, "secret_key": frozen.secret_key, "session_token": frozen.token}
    return {bucket: dict(keys) for bucket in buckets}
