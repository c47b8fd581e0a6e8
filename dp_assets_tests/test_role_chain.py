"""Cross-account data access: an [aws] role chain assumed in turn through (moto) STS over HTTP,
refreshed before expiry, used by the dump, handed to the Spark job, and never shown."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster._serdes import serialize_value
from moto.backends import get_backend

from dp_assets.aws import data_session
from dp_assets.config.loader import load_config_from
from dp_assets.config.model import Aws
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets_tests.conftest import packaged_text, spark_available
from dp_assets_tests.helpers import materializations, materialize_range

HOP, READER = "arn:aws:iam::111111111111:role/dp-hop", "arn:aws:iam::222222222222:role/dp-source-reader"
LANDING = "dp-landing-data-account"


def issued_secrets() -> set[str]:
    """Every secret key and session token moto's STS has handed out, in any account."""
    found: set[str] = set()
    for account in get_backend("sts").values():
        for backend in account.values():
            for role in backend.assumed_roles:
                found |= {role.secret_access_key, role.session_token}
    return found


def test_chain_assumes_each_role_in_turn_and_refreshes(aws: str) -> None:
    session = data_session(Aws(role_chain=[HOP, READER], session_name="dp-test", duration_seconds=900))
    assert session is not None
    identity = session.client("sts").get_caller_identity()
    assert identity["Arn"].endswith(":assumed-role/dp-source-reader/dp-test")
    assert identity["Account"] == "222222222222"
    # 900 s is inside botocore's refresh window: each use walks the chain again for fresh keys.
    first = session.get_credentials().get_frozen_credentials().access_key
    second = session.get_credentials().get_frozen_credentials().access_key
    assert first != second
    assert data_session(Aws()) is None  # no chain: the run's own credentials


@pytest.mark.skipif(not spark_available(), reason="needs Java for Spark")
def test_dump_and_load_use_the_chain_and_never_show_its_keys(aws: str, isolated_home: Path) -> None:
    boto3.client("s3").create_bucket(Bucket=LANDING)
    config = isolated_home / "config.toml"
    text = packaged_text().replace('input_path = "landing"', f'input_path = "s3://{LANDING}/drops"')
    config.write_text(text + f'\n[aws]\nrole_chain = ["{HOP}", "{READER}"]\nsession_name = "dp-test"\n')
    loaded = load_config_from(str(config))
    day = dt.date(2013, 1, 2)
    delivered = write_flight_deliveries(Lake(loaded), day, day)

    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(loaded, day.isoformat(), day.isoformat(), instance=instance)

    assert result.success
    (raw,) = materializations(result, "raw/flights")
    assert raw.metadata["dagster/row_count"].value == delivered[day.isoformat()]
    (load,) = materializations(result, "flights")
    assert load.metadata["s3_credentials_for"].value == [LANDING]  # the job's Spark got the keys
    secrets = issued_secrets()
    assert secrets, "the chain was never assumed"
    events = "".join(serialize_value(e) for e in instance.all_logs(result.run_id))
    leaked = [s for s in secrets if s in events]
    assert not leaked, "temporary AWS keys reached the event log"
