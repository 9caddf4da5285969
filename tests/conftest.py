"""Fixtures shared by every test: running hubs over real HTTP on 127.0.0.1 and real databases.

Contract (other test modules rely on it):

- ``hub``: a running :class:`RunningHub` (an :class:`oaiod.hub.server.HubServer`) on SQLite with ``.url``
  (``http://127.0.0.1:PORT/api/``), ``.host`` (``127.0.0.1:PORT``), ``.data_dir``, ``.settings``, ``.service``
  and ``.users`` (username → password: ``alice`` (supervisor), ``bob``, ``carol``). ``tests/hub`` overrides it
  to run on every ``db_url``.
- ``hub_factory(db_url="", users=True, **settings)``: start another hub (stopped at the end of the test).
- ``db_url``: parametrized over ``sqlite`` and ``postgres``; PostgreSQL needs ``OAIOD_TEST_PG_URL`` (start one
  with ``eval "$(bash .ci/postgres.sh)"``) and gets a fresh database per test, dropped afterwards. Without the
  variable the postgres case is skipped, except under ``CI=true`` where it fails.
- ``hub_session(hub, username, device="dev1", app="testapp", login=True)``: a :class:`HubSession`
  (``requests.Session`` on the hub's base URL, CSRF handled like the published client, logged in).
- ``browser``, ``page``: a real chromium (``tests/browser.py``), registered here once: a test module importing them
  would start a second Playwright in the same thread, which fails.
- ``blob_store``: the :class:`~oaiod.hub.settings.BlobStoreSettings` ``hub_factory`` starts hubs with (local by
  default); the blob tests override it with ``blob_store_param`` from ``tests/hub/blobhelpers.py`` to run once
  per content store. ``hub_bucket``: the session's S3 endpoint for hubs (:class:`HubBucket`): MinIO or any S3 at
  ``OAIOD_TEST_S3_URL`` (keys in ``OAIOD_TEST_S3_ACCESS_KEY``/``_SECRET_KEY``, bucket ``oaiod-test``), else a moto
  server started as a loopback process for the session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from oaiod.hub.server import HubServer
from oaiod.hub.settings import BlobStoreSettings, HubSettings
from oaiod.model import context_encode
from tests.browser import browser, page  # noqa: F401 (one session-wide browser: a second sync_playwright fails)

PG_ENV = "OAIOD_TEST_PG_URL"
TEST_USERS = {"alice": True, "bob": False, "carol": False}  # name -> supervisor


class RunningHub(HubServer):
    """A started hub with its test accounts."""

    users: dict[str, str]


class HubSession(requests.Session):
    """A session on a hub's base URL: relative paths, context headers, CSRF token fetched like the client does."""

    def __init__(self, hub: HubServer, username: str, device: str = "dev1", app: str = "testapp") -> None:
        super().__init__()
        self.base_url = hub.url
        self.username = username
        self.headers.update(context_encode(username, device, app))
        self.auto_csrf = True

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if not url.startswith("http"):
            url = self.base_url + url
        kwargs.setdefault("timeout", 30)
        if method.upper() != "GET" and self.auto_csrf:
            if not self.cookies.get("csrftoken"):
                super().request("GET", self.base_url + "login/", timeout=30)
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.cookies.get("csrftoken") or "")
            kwargs["headers"] = headers
        return super().request(method, url, *args, **kwargs)

    def login(self, password: str) -> requests.Response:
        answer = self.post("login/", json={"username": self.username, "password": password})
        assert answer.status_code == 200, answer.text
        return answer


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV, "")
    if not url:
        reason = f'PostgreSQL tests need {PG_ENV} (start one: eval "$(bash .ci/postgres.sh)")'
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test; dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped when the block ends (skips without PostgreSQL)."""
    admin_url = sa.engine.make_url(_pg_admin_url())
    name = f"oaiod_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for the hub: SQLite in ``tmp_path`` or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub-db.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@dataclass
class HubBucket:
    """An S3 endpoint and bucket for hubs' content stores, and an AWS credentials file (mode 0600) for it."""

    url: str
    bucket: str
    credentials_file: Path
    client: Any

    def settings(self, prefix: str = "", **options: Any) -> BlobStoreSettings:
        """Content under a fresh prefix (each test its own) of the bucket."""
        return BlobStoreSettings(kind="s3", s3_bucket=self.bucket, s3_endpoint=self.url,
                                 s3_prefix=prefix or f"t-{secrets.token_hex(6)}",
                                 s3_credentials_file=self.credentials_file, **options)  # fmt: skip


@pytest.fixture(scope="session")
def hub_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubBucket]:
    """The session's S3 endpoint for hubs (see the module docstring); a failure to start one fails the test."""
    import boto3

    from tests.storage.storage_servers import start_moto

    server = None
    url = os.environ.get("OAIOD_TEST_S3_URL", "")
    keys = (os.environ.get("OAIOD_TEST_S3_ACCESS_KEY", ""), os.environ.get("OAIOD_TEST_S3_SECRET_KEY", ""))
    if not url:
        server = start_moto(tmp_path_factory.mktemp("hub-moto") / "moto.log")
        url, keys = server.url, (server.access_key_id, server.secret_access_key)
    folder = tmp_path_factory.mktemp("hub-s3-keys")
    credentials = folder / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {keys[0]}\naws_secret_access_key = {keys[1]}\n")
    credentials.chmod(0o600)
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=keys[0],
                          aws_secret_access_key=keys[1])  # fmt: skip
    bucket = "oaiod-test"
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=bucket)
    yield HubBucket(url, bucket, credentials, client)
    client.close()
    if server is not None:
        server.stop()


@pytest.fixture
def blob_store() -> BlobStoreSettings:
    """The content store of the hubs ``hub_factory`` starts: the data folder (blob tests override this)."""
    return BlobStoreSettings()


@pytest.fixture
def hub_factory(tmp_path: Path, blob_store: BlobStoreSettings) -> Iterator[Callable[..., RunningHub]]:
    """Start hubs on free ports (with the ``blob_store`` content store unless told); every one is stopped when the
    test ends."""
    started: list[RunningHub] = []

    def make(db_url: str = "", users: bool = True, **options: Any) -> RunningHub:
        options.setdefault("blob_store", blob_store)
        data_dir = options.pop("data_dir", tmp_path / f"hub{len(started)}")
        settings = HubSettings(data_dir=data_dir, db_url=db_url, port=0, **options)
        server = RunningHub(settings)
        server.users = {}
        server.start()
        started.append(server)
        if users:
            assert server.service is not None
            for name, supervisor in TEST_USERS.items():
                password = secrets.token_urlsafe(12)
                server.service.add_user(name, password, supervisor=supervisor)
                server.users[name] = password
        return server

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def hub(hub_factory: Callable[..., RunningHub]) -> RunningHub:
    """A running hub on SQLite with alice (supervisor), bob and carol."""
    return hub_factory()


@pytest.fixture
def hub_session() -> Iterator[Callable[..., HubSession]]:
    """Logged-in sessions on a hub: ``hub_session(hub, "bob")``."""
    opened: list[HubSession] = []

    def make(hub: RunningHub, username: str, device: str = "dev1", app: str = "testapp", login: bool = True):
        session = HubSession(hub, username, device, app)
        opened.append(session)
        if login:
            session.login(hub.users[username])
        return session

    yield make
    for session in opened:
        session.close()
