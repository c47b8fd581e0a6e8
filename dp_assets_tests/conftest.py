"""Shared fixtures: an isolated DP_HOME per test, one moto S3 server over HTTP and one real
PostgreSQL server per session, and the EMR emulator on that moto server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
from moto.server import ThreadedMotoServer

from dp_assets_tests.emr_emulator import emr_emulator_fixture  # noqa: F401  (the emr_emulator fixture)
from dp_assets_tests.jvm import fast_start_options

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def pytest_configure(config: pytest.Config) -> None:
    if "SPARK_SUBMIT_OPTS" not in os.environ and spark_available():
        os.environ["SPARK_SUBMIT_OPTS"] = fast_start_options()  # jvm.py: every Spark JVM starts faster


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own DP_HOME and cwd, and no config URI or Dagster home leaks in."""
    home = tmp_path / "dp_home"
    home.mkdir()
    monkeypatch.setenv("DP_HOME", str(home))
    for var in ("CONFIG_S3_URI", "DAGSTER_HOME", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A persistent (SQLite) instance: sensor and schedule contexts reach it through its ref."""
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (through AWS_ENDPOINT_URL, as in production code) at the moto server."""
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3 caches credentials in its default session
    return moto_endpoint


@pytest.fixture
def versioned_bucket(aws: str, request: pytest.FixtureRequest) -> str:
    """A fresh versioned bucket per test."""
    name = "cfg-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


PACKAGED_CONFIG = Path(__file__).resolve().parent.parent / "dp_assets" / "config" / "config.toml"


def packaged_text() -> str:
    """The packaged config without its [derived.*] sections: a copy elsewhere has no transforms/
    folder beside it, and a [derived] section without its SQL file is an error."""
    return PACKAGED_CONFIG.read_text().split("\n[derived.")[0]


def spark_available() -> bool:
    return os.system("java -version >/dev/null 2>&1") == 0


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real PostgreSQL server: the one DP_DEMO_PG_DSN names (.ci/run starts Debian's), else the
    demo's embedded server. Tests create their own schemas in it."""
    from dp_assets.demo import demo_database

    return demo_database(tmp_path_factory.mktemp("postgres"))


class PgSchema:
    """A fresh schema on the test server; statements name it `{s}`."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.name = dsn, f"t_{uuid.uuid4().hex[:10]}"
        self.execute("CREATE SCHEMA {s}")

    def execute(self, statement: str, rows: list[tuple] | None = None) -> None:
        import psycopg
        from psycopg import sql

        query = sql.SQL(statement).format(s=sql.Identifier(self.name))  # type: ignore[arg-type]
        with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.executemany(query, rows) if rows else cur.execute(query)


@pytest.fixture
def pg_schema(postgres_dsn: str) -> PgSchema:
    return PgSchema(postgres_dsn)
