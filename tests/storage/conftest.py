"""Fixtures of the storage conformance suite: the session-scoped servers behind the backends, and ``store`` /
``backend``, which run each test once per backend of :data:`storage_stores.STORES`.

Servers are session-scoped (a fixture yields None when its server cannot start; the factory in
``storage_stores.py`` then skips locally and fails in CI); each test gets a fresh root (folder, WebDAV
collection, S3 prefix or empty blob store). Helpers that tests import live in ``storage_stores.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import storage_servers as servers
from storage_stores import HUB_USERS, READ_ONLY_ID, STORES, S3Endpoint, StoreUnderTest, request_s3_endpoint_again

from oaiod.storage.base import Backend


@pytest.fixture(scope="session")
def webdav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.WebDavServer | None]:
    try:
        server = servers.start_webdav(tmp_path_factory.mktemp("webdav"))
    except Exception as exc:  # any reason the server cannot start
        yield None
        print(f"WebDAV server did not start: {exc}")
        return
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint | None]:
    """MinIO (or any S3) at ``OAIOD_TEST_S3_URL`` with ``OAIOD_TEST_S3_ACCESS_KEY``/``_SECRET_KEY``, else moto."""
    import boto3

    server = None
    if os.environ.get("OAIOD_TEST_S3_URL"):
        endpoint = request_s3_endpoint_again()
    else:
        try:
            server = servers.start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
        except Exception as exc:
            print(f"moto S3 server did not start: {exc}")
            yield None
            return
        endpoint = S3Endpoint(server.url, server.port, server.access_key_id, server.secret_access_key)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
    )
    try:
        client.create_bucket(Bucket=endpoint.bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    endpoint.client = client  # type: ignore[attr-defined]
    yield endpoint
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def s3_auth_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint | None]:
    """An S3 endpoint that checks credentials: ``OAIOD_TEST_S3_URL`` when set, else moto with IAM auth on."""
    if os.environ.get("OAIOD_TEST_S3_URL"):
        yield request_s3_endpoint_again()
        return
    try:
        server = servers.start_moto(tmp_path_factory.mktemp("moto-auth") / "moto.log", auth=True)
    except Exception as exc:
        print(f"moto S3 server with auth did not start: {exc}")
        yield None
        return
    yield S3Endpoint(server.url, server.port, server.access_key_id, server.secret_access_key)
    server.stop()


def _start_blob_hub(data_dir: Path, blob_store: Any = None) -> Any:
    """A hub on loopback with alice and bob, and alice's object that bob may only read."""
    from oaiod.hub.server import HubServer
    from oaiod.hub.service import Actor
    from oaiod.hub.settings import BlobStoreSettings, HubSettings
    from oaiod.model import OaiObject, now_stamp

    settings = HubSettings(data_dir=data_dir, port=0, blob_store=blob_store or BlobStoreSettings())
    server = HubServer(settings).start()
    service = server.service
    assert service is not None
    for name, password in HUB_USERS.items():
        service.add_user(name, password)
    alice = Actor("alice", "alice", False)
    obj = OaiObject(oaio_id=READ_ONLY_ID, client_stamp=now_stamp(), client_values={"_name": "x"}, csh_id="Hub")
    service.register(alice, obj)
    service.subscribe(alice, READ_ONLY_ID, "bob", "r")
    return server


@pytest.fixture(scope="session")
def blob_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One hub on loopback for the suite, with alice and bob; each test starts with an empty blob store."""
    try:
        server = _start_blob_hub(tmp_path_factory.mktemp("blob-hub"))
    except Exception as exc:  # any reason the hub cannot start
        print(f"hub did not start: {exc}")
        yield None
        return
    yield server
    server.stop()


@pytest.fixture(scope="session")
def blob_hub_s3(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: S3Endpoint | None) -> Iterator[Any]:
    """Like ``blob_hub``, with its content in the S3 endpoint's bucket and direct transfers on."""
    from oaiod.hub.settings import BlobStoreSettings

    if s3_endpoint is None:
        yield None
        return
    folder = tmp_path_factory.mktemp("blob-hub-s3")
    keys = folder / "credentials"
    keys.write_text(f"[default]\naws_access_key_id = {s3_endpoint.access_key_id}\n"
                    f"aws_secret_access_key = {s3_endpoint.secret_access_key}\n")  # fmt: skip
    keys.chmod(0o600)
    settings = BlobStoreSettings(kind="s3", s3_bucket=s3_endpoint.bucket, s3_endpoint=s3_endpoint.url,
                                 s3_prefix="blob-hub", s3_credentials_file=keys, s3_direct=True)  # fmt: skip
    try:
        server = _start_blob_hub(folder / "data", settings)
    except Exception as exc:  # any reason the hub cannot start
        print(f"hub on S3 did not start: {exc}")
        yield None
        return
    yield server
    server.stop()


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    """Each backend in turn, on a fresh root of its real host."""
    made = STORES[request.param](request, tmp_path)
    yield made
    for cleanup in reversed(made.cleanups):
        cleanup()


@pytest.fixture
def backend(store: StoreUnderTest) -> Iterator[Backend]:
    made = store.make()
    yield made
    made.close()
