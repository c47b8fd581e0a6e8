"""Both stores list in S3's key order, resume after a marker, stop at a limit, and see rewrites."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import boto3
import pytest

from spark_jobs.storage import LocalStore, S3Store, Store

# Names chosen so a naive per-directory walk would get S3's order wrong: "a.txt" < "a/x" because
# "." < "/", and "a/x" < "a0" because "/" < "0".
PATHS = [
    "p/2024-01-01/f1.csv",
    "p/2024-01-01/f2.csv",
    "p/2024-01-02/a.txt",
    "p/2024-01-02/a/x.csv",
    "p/2024-01-02/a0",
    "p/2024-01-03/f1.csv",
    "p/README",
]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(str(tmp_path / "landing"))
    request.getfixturevalue("aws")
    boto3.client("s3").create_bucket(Bucket="landing-order")
    s3 = S3Store("s3://landing-order/zone")
    s3.delete_prefix("p")
    return s3


def write(store: Store, path: str, body: bytes) -> None:
    with store.open_write(path) as f:
        f.write(body)


def test_list_after_matches_s3_order_resumes_and_limits(store: Store) -> None:
    for p in reversed(PATHS):
        write(store, p, b"x")
    write(store, "other/2024-01-01/f.csv", b"not under the prefix")

    assert [f.path for f in store.list("p")] == PATHS
    assert [f.path for f in store.list_after("p", None, None)] == PATHS
    assert [f.path for f in store.list_after("p", "p/2024-01-02/a.txt", None)] == PATHS[3:]
    assert [f.path for f in store.list_after("p", "p/2024-01-02", 2)] == PATHS[2:4]
    # A day marker (no trailing file) sorts before that day's files: the day is included.
    assert [f.path for f in store.list_after("p", "p/2024-01-03", None)] == PATHS[5:]
    assert store.list_after("p", "p/README", None) == []
    assert store.list_after("nothing-here", None, None) == []


def test_version_changes_when_a_file_is_rewritten(store: Store) -> None:
    write(store, "p/2024-01-01/f.csv", b"first")
    (before,) = store.list_after("p", None, None)
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    write(store, "p/2024-01-01/f.csv", b"first")  # same bytes, new delivery
    (same_bytes,) = store.list_after("p", None, None)
    write(store, "p/2024-01-01/f.csv", b"second")
    (changed,) = store.list_after("p", None, None)
    assert before.version and len({before.version, same_bytes.version, changed.version}) == 3
    assert (before.size, changed.size) == (5, 6)


def test_exclusive_create_admits_one_writer(store: Store) -> None:
    """The table lock's primitive: O_EXCL locally, a conditional write (If-None-Match) on S3."""
    store.delete("p/_lock.json")
    assert store.create_exclusive("p/_lock.json", b"first")
    assert not store.create_exclusive("p/_lock.json", b"second")
    with store.open_read("p/_lock.json") as f:
        assert f.read() == b"first"
    store.delete("p/_lock.json")
    assert store.create_exclusive("p/_lock.json", b"third")


def test_a_store_pickled_to_another_process_reads_the_same_files(store: Store) -> None:
    """Spark sends the dump's stores to its Python workers: a pickled store reconnects there."""
    write(store, "p/f.csv", b"body")
    copy = pickle.loads(pickle.dumps(store))
    assert copy is not store and [f.path for f in copy.list("p")] == ["p/f.csv"]
    with copy.open_read("p/f.csv") as f:
        assert f.read() == b"body"


def test_an_s3_store_pickles_its_sessions_keys_never_its_client(aws: str) -> None:
    """A role chain's session is refreshed in this process only: the copy gets the keys it holds
    now, which is what the worker then signs with."""
    boto3.client("s3").create_bucket(Bucket="landing-order")
    keys = boto3.Session("AKIDCHAIN", "s3cr3t", "tok")
    copy = pickle.loads(pickle.dumps(S3Store("s3://landing-order/zone", keys)))
    frozen = copy._session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("AKIDCHAIN", "s3cr3t", "tok")
    assert copy.list("nothing") == []  # moto takes any keys: the copy connects
