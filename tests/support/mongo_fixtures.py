"""pytest fixtures for MongoDB: the wire double, and a real-or-double target for contracts.

``mongo_double`` gives each test a fresh :class:`~tests.support.mongo_double.MongoDouble`
(stopped at teardown); ``mongo_uri`` is its direct-connection URI. ``mongo_target`` runs a
contract test twice: against the double and against a real replica set, taken from
``SCC_TEST_MONGODB_URI`` or started once per session with testcontainers (``mongo:7``,
``--replSet rs0``). When neither is available the ``real`` case is skipped with the reason;
a Docker failure is remembered for the whole session so it costs nothing after the first.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient

from tests.support.mongo_double import MongoDouble

REAL_URI_ENV = "SCC_TEST_MONGODB_URI"
CONTRACT_DB = "scc_contract"


@dataclass
class MongoTarget:
    """Where a contract test runs: ``kind`` is ``double`` or ``real``."""

    kind: str
    uri: str
    double: MongoDouble | None = None
    collection: str = field(default_factory=lambda: f"contract_{uuid.uuid4().hex[:12]}")
    db: str = CONTRACT_DB

    def client(self, **options: Any) -> AsyncMongoClient[dict[str, Any]]:
        """A new async client (the test must ``await client.close()``)."""
        options.setdefault("serverSelectionTimeoutMS", 10_000)
        return AsyncMongoClient(self.uri, **options)

    def require_double(self) -> MongoDouble:
        """The double, or skip: fault hooks only exist on the double."""
        if self.double is None:
            pytest.skip("fault hooks exist only on the MongoDB wire double")
        return self.double


@dataclass
class _RealMongo:
    uri: str | None
    reason: str


@pytest.fixture
def mongo_double() -> Iterator[MongoDouble]:
    """A fresh, started MongoDB wire double, stopped when the test ends."""
    double = MongoDouble().start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def mongo_uri(mongo_double: MongoDouble) -> str:
    """The direct-connection URI of this test's MongoDB wire double."""
    return mongo_double.uri


@pytest.fixture(scope="session")
def real_mongo() -> Iterator[_RealMongo]:
    """A real replica set for the session, or the reason there is none (tried once)."""
    uri = os.environ.get(REAL_URI_ENV)
    if uri:
        yield _RealMongo(uri, "")
        return
    container: Any = None
    reason = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # third-party start-up noise must not mask the reason
        try:
            container, uri = _start_container()
        except Exception as exc:  # no Docker engine, no image, no network: all mean "skip"
            name = f"{type(exc).__module__}.{type(exc).__qualname__}"
            reason = f"no real MongoDB: set {REAL_URI_ENV} or install Docker ({name}: {exc})"
        # A failed Docker client leaves a half-open socket; let it go while warnings are off.
        gc.collect()
    if reason:
        yield _RealMongo(None, reason[:500])
        return
    try:
        yield _RealMongo(uri, "")
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            container.stop()


def _initiate_replica_set(uri: str) -> None:
    client: MongoClient[dict[str, Any]]
    with MongoClient(uri, serverSelectionTimeoutMS=30_000) as client:
        config = {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]}
        client.admin.command("replSetInitiate", config)
        deadline = time.monotonic() + 60
        while not client.admin.command("hello").get("isWritablePrimary"):
            if time.monotonic() > deadline:
                raise TimeoutError("the mongo:7 container never became primary")
            time.sleep(0.2)


def _start_container() -> tuple[Any, str]:
    from testcontainers.community.mongodb import MongoDbContainer

    class _ReplicaSetContainer(MongoDbContainer):
        def _configure(self) -> None:
            """No root user: an authenticated replica set would also need a key file."""

    container = _ReplicaSetContainer("mongo:7").with_command("--replSet rs0 --bind_ip_all")
    container.start()
    try:
        host = container.get_container_host_ip()
        uri = f"mongodb://{host}:{container.get_exposed_port(27017)}/?directConnection=true"
        _initiate_replica_set(uri)
    except BaseException:
        container.stop()
        raise
    return container, uri


@pytest.fixture(params=["double", pytest.param("real", marks=pytest.mark.realmongo)])
def mongo_target(request: pytest.FixtureRequest) -> Iterator[MongoTarget]:
    """A contract target: a fresh double, or the session's real replica set (else skipped)."""
    if request.param == "double":
        double = MongoDouble().start()
        try:
            yield MongoTarget("double", double.uri, double)
        finally:
            double.stop()
        return
    real: _RealMongo = request.getfixturevalue("real_mongo")
    if real.uri is None:
        pytest.skip(real.reason)
    target = MongoTarget("real", real.uri)
    try:
        yield target
    finally:
        client: MongoClient[dict[str, Any]]
        with MongoClient(real.uri, serverSelectionTimeoutMS=5_000) as client:
            client[target.db].drop_collection(target.collection)
            client[target.db].drop_collection(target.collection + "_other")
