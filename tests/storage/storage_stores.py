"""The backends of the storage conformance suite, each on a fresh root of its real host, joined through
:data:`STORES`.

A backend joins the suite with a factory in :data:`STORES` (name -> function of the pytest request and a fresh
tmp folder, returning a :class:`StoreUnderTest`), as the hub's blob store does (``make_hub_store``). The servers
behind them are session-scoped fixtures in ``conftest.py``, which a factory asks for by name
(``request.getfixturevalue``). A server that cannot start is a skip with the reason locally and a failure in CI
(``CI=true``): a backend that does not run is not a backend that passes.

Tests import these helpers from here, never from ``conftest``: several ``conftest.py`` exist under ``tests/``,
and which one ``import conftest`` finds depends on the order pytest loaded them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import storage_servers as servers

from oaiod.storage.base import Backend
from oaiod.storage.errors import TransientStorageError
from oaiod.storage.wrappers import RetryingBackend, WrappingBackend


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: every backend must run there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"storage backend unavailable in CI: {reason}")
    pytest.skip(reason)


@dataclass
class StoreUnderTest:
    """One backend on a fresh root of its real host, and the means to test what the interface cannot show."""

    name: str
    csh_id: str
    args: dict[str, Any]
    #: a new bare backend on that root
    make: Callable[[], Backend]
    #: reads an object by its path on the host, bypassing the backend (for the upstream layout)
    read_native: Callable[[str], bytes]
    #: a backend on the same root whose transport fails once with a transient error, and the fault counter
    faulty: Callable[[], tuple[Backend, Callable[[], int]]]
    #: a backend whose writes are refused (bad credentials or read-only folder)
    denied: Callable[[], Backend]
    cleanups: list[Callable[[], None]] = field(default_factory=list)


class FailOnceBackend(WrappingBackend):
    """Raises one TransientStorageError on the first call, then passes calls through.

    For hosts without a network transport to break (a local folder, rclone's own retrying transport), the
    fault is injected at the backend boundary instead.
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.faults = 0

    def _call(self, name: str, key: str, func: Callable[[], Any]) -> Any:
        if self.faults == 0:
            self.faults += 1
            raise TransientStorageError(f"injected failure of {name} {key!r}", key=key)
        return func()


def fail_once(make: Callable[[], Backend]) -> Callable[[], tuple[Backend, Callable[[], int]]]:
    def build() -> tuple[Backend, Callable[[], int]]:
        flaky = FailOnceBackend(make())
        return RetryingBackend(flaky, attempts=3, backoff_base=0.01), lambda: flaky.faults

    return build


# -- Local ----------------------------------------------------------------------------------------------------


def make_local_store(request: pytest.FixtureRequest, tmp: Path) -> StoreUnderTest:
    from oaiod.storage.local import LocalBackend

    root = tmp / "local-root"
    root.mkdir()
    store = StoreUnderTest(
        name="local",
        csh_id="Local",
        args={"root_folder": str(root)},
        make=lambda: LocalBackend(root),
        read_native=lambda path: (root / path).read_bytes(),
        faulty=fail_once(lambda: LocalBackend(root)),
        denied=lambda: _denied_local(store, tmp / "read-only"),
    )
    return store


def _denied_local(store: StoreUnderTest, folder: Path) -> Backend:
    from oaiod.storage.local import LocalBackend

    context = servers.read_only_folder(folder)
    try:
        context.__enter__()
    except RuntimeError as exc:
        unavailable(str(exc))
    store.cleanups.append(lambda: context.__exit__(None, None, None))
    return LocalBackend(folder)


# -- WebDav ---------------------------------------------------------------------------------------------------


def running_webdav(request: pytest.FixtureRequest) -> servers.WebDavServer:
    """The session's WebDAV server (fixture ``webdav_server``); skip locally, fail in CI when it did not start."""
    server = request.getfixturevalue("webdav_server")
    if server is None:
        unavailable("wsgidav could not start a WebDAV server on loopback")
    return server


def webdav_args(url: str, root: str, password: str = servers.WEBDAV_PASSWORD) -> dict[str, Any]:
    return {"url": url, "root_folder": root, "username": servers.WEBDAV_USER, "password": password}


def make_webdav_store(request: pytest.FixtureRequest, tmp: Path) -> StoreUnderTest:
    from oaiod.storage.webdav import WebDavBackend

    server = running_webdav(request)
    root = f"dav root/{tmp.name}"

    def faulty() -> tuple[Backend, Callable[[], int]]:
        proxy = servers.FaultProxy(server.port)
        store.cleanups.append(proxy.close)
        inner = WebDavBackend.from_args(webdav_args(proxy.url, root))
        return RetryingBackend(inner, attempts=3, backoff_base=0.01), lambda: proxy.faults

    store = StoreUnderTest(
        name="webdav",
        csh_id="WebDav",
        args=webdav_args(server.url, root),
        make=lambda: WebDavBackend.from_args(webdav_args(server.url, root)),
        read_native=lambda path: (server.root / root / path).read_bytes(),
        faulty=faulty,
        denied=lambda: WebDavBackend.from_args(webdav_args(server.url, root, password="wrong")),
    )
    return store


# -- S3 ----------------------------------------------------------------------------------------------------


@dataclass
class S3Endpoint:
    url: str
    port: int
    access_key_id: str
    secret_access_key: str
    bucket: str = "oaiod-test"


def request_s3_endpoint_again() -> S3Endpoint:
    return S3Endpoint(
        os.environ["OAIOD_TEST_S3_URL"],
        0,
        os.environ.get("OAIOD_TEST_S3_ACCESS_KEY", ""),
        os.environ.get("OAIOD_TEST_S3_SECRET_KEY", ""),
    )


def s3_args(endpoint: S3Endpoint, url: str, prefix: str, secret: str | None = None) -> dict[str, Any]:
    return {
        "endpoint_url": url,
        "bucket": endpoint.bucket,
        "prefix": prefix,
        "access_key_id": endpoint.access_key_id,
        "secret_access_key": secret or endpoint.secret_access_key,
    }


def make_s3_store(request: pytest.FixtureRequest, tmp: Path) -> StoreUnderTest:
    from oaiod.storage.s3 import S3Backend

    endpoint = request.getfixturevalue("s3_endpoint")
    if endpoint is None:
        unavailable("moto could not start an S3 server on loopback")
    prefix = f"suite/{tmp.name}"

    def make(url: str = endpoint.url, on: S3Endpoint = endpoint, secret: str | None = None) -> Backend:
        return S3Backend(
            on.bucket,
            endpoint_url=url,
            prefix=prefix,
            access_key_id=on.access_key_id,
            secret_access_key=secret or on.secret_access_key,
            multipart_threshold=8 * 1024 * 1024,  # the 64 MiB case goes in parts
        )

    def denied() -> Backend:
        auth = request.getfixturevalue("s3_auth_endpoint")
        if auth is None:
            unavailable("moto could not start an S3 server with auth on loopback")
        return make(auth.url, auth, secret="not-the-secret")

    def faulty() -> tuple[Backend, Callable[[], int]]:
        proxy = servers.FaultProxy(endpoint.port)
        store.cleanups.append(proxy.close)
        return RetryingBackend(make(proxy.url), attempts=3, backoff_base=0.01), lambda: proxy.faults

    def read_native(path: str) -> bytes:
        return endpoint.client.get_object(Bucket=endpoint.bucket, Key=f"{prefix}/{path}")["Body"].read()

    store = StoreUnderTest(
        name="s3",
        csh_id="S3",
        args=s3_args(endpoint, endpoint.url, prefix),
        make=make,
        read_native=read_native,
        faulty=faulty,
        denied=denied,
    )
    return store


# -- Rclone -------------------------------------------------------------------------------------------------


def _rclone_or_skip() -> None:
    if shutil.which("rclone") is None:
        unavailable("the rclone program is not installed (apt-get install rclone)")


def make_rclone_local_store(request: pytest.FixtureRequest, tmp: Path) -> StoreUnderTest:
    from oaiod.storage.rclone import RcloneBackend

    _rclone_or_skip()
    root = tmp / "rclone-root"
    root.mkdir()
    args = {"remote": ":local:", "root_folder": str(root)}
    store = StoreUnderTest(
        name="rclone_local",
        csh_id="Rclone",
        args=args,
        make=lambda: RcloneBackend.from_args(args),
        read_native=lambda path: (root / path).read_bytes(),
        faulty=fail_once(lambda: RcloneBackend.from_args(args)),
        denied=lambda: _denied_rclone_local(store, tmp / "read-only"),
    )
    return store


def _denied_rclone_local(store: StoreUnderTest, folder: Path) -> Backend:
    from oaiod.storage.rclone import RcloneBackend

    _denied_local(store, folder).close()
    return RcloneBackend.from_args({"remote": ":local:", "root_folder": str(folder)})


def rclone_webdav_args(url: str, root: str, password: str = servers.WEBDAV_PASSWORD) -> dict[str, Any]:
    remote = f':webdav,url="{url}/",user={servers.WEBDAV_USER}:'
    return {"remote": remote, "root_folder": root, "password": password}


def make_rclone_webdav_store(request: pytest.FixtureRequest, tmp: Path) -> StoreUnderTest:
    """rclone's webdav remote against the wsgidav server; the password reaches rcd obscured, via env."""
    from oaiod.storage.rclone import RcloneBackend

    _rclone_or_skip()
    server = running_webdav(request)
    root = f"rclone dav/{tmp.name}"

    def faulty() -> tuple[Backend, Callable[[], int]]:
        # rclone's own pacer may absorb the 503 before the retry wrapper sees it; either way the call succeeds
        proxy = servers.FaultProxy(server.port)
        store.cleanups.append(proxy.close)
        inner = RcloneBackend.from_args(rclone_webdav_args(proxy.url, root))
        return RetryingBackend(inner, attempts=3, backoff_base=0.01), lambda: proxy.faults

    store = StoreUnderTest(
        name="rclone_webdav",
        csh_id="Rclone",
        args=rclone_webdav_args(server.url, root),
        make=lambda: RcloneBackend.from_args(rclone_webdav_args(server.url, root)),
        read_native=lambda path: (server.root / root / path).read_bytes(),
        faulty=faulty,
        denied=lambda: RcloneBackend.from_args(rclone_webdav_args(server.url, root, password="wrong")),
    )
    return store


# -- Digi and Goodrive: the published client's hosts, on a local stand-in -------------------------------------
#
# Digi Storage and Google Drive cannot be reached from here. These stores build the backend from the published
# client's arguments exactly as for the real host (the remote config, the obscured password and the credentials
# in rcd's environment, no config file) and swap only the rclone backend type for ``local``, under a tmp folder.
# What the real services would do with that config is not verified (see oaiod/storage/digi.py, goodrive.py).
# ``digi_koofr`` goes further for Digi: rclone's real koofr remote against a Koofr-API server (only the endpoint
# swapped).

DIGI_ARGS = {"root_folder": "oaio/files", "email": "alice@example.org", "password": "digi secret ' \" $x"}


def local_stand_in(remote: Any, base: Path) -> Any:
    """``remote`` (a RemoteConfig) with its type swapped for rclone's ``local``, its path under ``base``."""
    import dataclasses

    base.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(remote, type="local", path=str(base / remote.path) if remote.path else str(base))


def goodrive_args(tmp: Path) -> dict[str, Any]:
    """Goodrive arguments with a (made-up) service account key file, 0600."""
    key = tmp / "sa.json"
    if not key.exists():
        fake = {"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com", "private_key": "KEY"}
        key.write_text(json.dumps(fake))
        key.chmod(0o600)
    return {"root_folder": "1AbCdEfGhIjKlMnOp", "sa_cred_file": str(key)}


def make_published_store(request: pytest.FixtureRequest, tmp: Path, csh_id: str) -> StoreUnderTest:
    from oaiod.storage.digi import DigiBackend, digi_remote
    from oaiod.storage.goodrive import GoodriveBackend, goodrive_remote

    _rclone_or_skip()
    base = tmp / f"{csh_id.lower()}-host"
    if csh_id == "Digi":
        args, cls, remote = DIGI_ARGS, DigiBackend, digi_remote(DIGI_ARGS)
    else:
        args = goodrive_args(tmp)
        cls, remote = GoodriveBackend, goodrive_remote(args)
    stand_in = local_stand_in(remote, base)
    root = Path(stand_in.path)

    def denied() -> Backend:
        _denied_local(store, tmp / "read-only").close()
        return cls.from_remote(local_stand_in(remote, tmp / "read-only"))

    store = StoreUnderTest(
        name=f"{csh_id.lower()}_local",
        csh_id=csh_id,
        args=args,
        make=lambda: cls.from_remote(stand_in),
        read_native=lambda path: (root / path).read_bytes(),
        faulty=fail_once(lambda: cls.from_remote(stand_in)),
        denied=denied,
    )
    return store


def make_digi_koofr_store(request: pytest.FixtureRequest, tmp: Path) -> StoreUnderTest:
    """The Digi backend through rclone's real ``koofr`` remote against a Koofr-API server in memory
    (``koofr_server.py``): only the endpoint is swapped (Digi Storage itself cannot be reached from here)."""
    import dataclasses

    from koofr_server import start_koofr

    from oaiod.storage.digi import DigiBackend, digi_remote

    _rclone_or_skip()
    server = start_koofr(tmp / "koofr", DIGI_ARGS["email"], DIGI_ARGS["password"])

    def make(password: str = DIGI_ARGS["password"]) -> Backend:
        remote = digi_remote({**DIGI_ARGS, "password": password})
        return DigiBackend.from_remote(dataclasses.replace(remote, options={**remote.options, "endpoint": server.url}))

    store = StoreUnderTest(
        name="digi_koofr",
        csh_id="Digi",
        args=DIGI_ARGS,
        make=make,
        read_native=lambda path: (server.root / DIGI_ARGS["root_folder"] / path).read_bytes(),
        faulty=fail_once(make),
        denied=lambda: make("not the password"),
        cleanups=[server.stop],
    )
    return store


# -- Hub ------------------------------------------------------------------------------------------------------

HUB_USERS = {"alice": "alice-blob-secret", "bob": "bob-blob-secret"}
#: alice's object that bob may only read: his writes of ``READ_ONLY_ID/key`` are refused (an id minted for alice:
#: the hub refuses to register an id that names nobody or another user)
READ_ONLY_ID = "test⫻alice﹫dev⁄some⁄20250101000000000000"


def hub_args(url: str, username: str = "alice") -> dict[str, Any]:
    return {"url": url, "username": username, "password": HUB_USERS[username]}


def _blob_store(server: Any) -> Any:
    from oaiod.hub.blobstore import BlobStore

    [store] = [part for part in server.service.attachments if isinstance(part, BlobStore)]
    return store


def _empty_blob_store(server: Any) -> None:
    import sqlalchemy as sa

    from oaiod.hub.db import Blob, BlobBlock, BlobUpload

    with server.service.sessions.begin() as db:
        db.execute(sa.delete(Blob))
        db.execute(sa.delete(BlobBlock))
        db.execute(sa.delete(BlobUpload))
    content = _blob_store(server).content
    content.remove_many(list(content.iter_content()))
    shutil.rmtree(server.data_dir / "blobs" / "uploads", ignore_errors=True)
    (server.data_dir / "blobs" / "uploads").mkdir()


def read_hub_native(server: Any, name: str) -> bytes:
    """The content the hub stores for ``name``, read from its content store (content addressed by sha256)."""
    store = _blob_store(server)
    found = [sha for _owner, stored, sha in store.iter_names() if stored == name]
    assert len(found) == 1, f"{name!r} is stored {len(found)} times"
    with store.content.open(found[0]) as file:
        return bytes(file.read())


def make_hub_store(request: pytest.FixtureRequest, tmp: Path, fixture: str = "blob_hub") -> StoreUnderTest:
    from oaiod.storage.hub import HubBackend

    server = request.getfixturevalue(fixture)
    if server is None:
        unavailable("the hub could not start on loopback")
    _empty_blob_store(server)

    def faulty() -> tuple[Backend, Callable[[], int]]:
        proxy = servers.FaultProxy(server.port)
        store.cleanups.append(proxy.close)
        inner = HubBackend.from_args(hub_args(f"{proxy.url}/api/"))
        return RetryingBackend(inner, attempts=3, backoff_base=0.01), lambda: proxy.faults

    def denied() -> Backend:
        """bob may read alice's object ``READ_ONLY_ID`` (the suite writes ``READ_ONLY_ID/key``) but not write its
        blobs: 403."""
        return HubBackend.from_args(hub_args(server.url, "bob"))

    store = StoreUnderTest(
        name="hub",
        csh_id="Hub",
        args=hub_args(server.url),
        make=lambda: HubBackend.from_args(hub_args(server.url)),
        read_native=lambda path: read_hub_native(server, path),
        faulty=faulty,
        denied=denied,
    )
    return store


# -- registry of stores -----------------------------------------------------------------------------------------

#: name -> factory; each backend (the hub's blob store included) joins the conformance suite here
STORES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreUnderTest]] = {
    "local": make_local_store,
    "webdav": make_webdav_store,
    "s3": make_s3_store,
    "rclone_local": make_rclone_local_store,
    "rclone_webdav": make_rclone_webdav_store,
    "digi_local": lambda request, tmp: make_published_store(request, tmp, "Digi"),
    "goodrive_local": lambda request, tmp: make_published_store(request, tmp, "Goodrive"),
    "digi_koofr": make_digi_koofr_store,
    "hub": make_hub_store,
    # the hub with its content in the S3 endpoint's bucket, handing out pre-signed URLs (direct transfers)
    "hub_s3": lambda request, tmp: make_hub_store(request, tmp, "blob_hub_s3"),
}
