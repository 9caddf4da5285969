"""Blobs go with what they belong to: ``delete/`` of an object drops every blob and unfinished upload under its
id, ``wipe_user/`` (and ``oaiod hub user del``) a user's private blobs, the blobs of ids they minted and never
registered, their unfinished uploads and the blobs of the objects deleted with them — in the same transaction as
the rest of the change (a failure injected after the blob rows were dropped rolls everything back), with the
content files removed after the commit. Real hub over loopback, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from oaiod.cli import main
from oaiod.hub.blobstore import BlobStore, sha256_text
from oaiod.hub.db import Blob, BlobUpload, Object
from oaiod.hub.server import HubServer
from oaiod.hub.service import Removal
from tests.hub.blobhelpers import (
    STAMP,
    B,
    blob_store_args,
    blob_store_param,  # noqa: F401 - the fixture blob_store: each test on every content store
    create,
    download,
    minted,
    new_id,
    put_blob,
    send,
    sha,
    stored_content,
)
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration


def blob_rows(hub: HubServer, table: Any = Blob) -> list[tuple[str, str, str]]:
    """``(owner, name, creator)`` of every row of ``table`` (Blob or BlobUpload)."""
    assert hub.service is not None
    with hub.service.sessions() as db:
        return sorted(tuple(row) for row in db.execute(sa.select(table.owner, table.name, table.creator)))


def content_files(hub: HubServer) -> set[str]:
    return set(stored_content(hub))


def upload_files(hub: HubServer) -> list[Path]:
    return list((hub.data_dir / "blobs" / "uploads").iterdir())


def register(session: Any, user: str, name: str, *files: tuple[str, bytes]) -> str:
    """Register an object of ``user`` after putting ``files`` (relative name, bytes) under its id; the id."""
    obj = new_object(user, name)
    for path, data in files:
        put_blob(session, f"{obj['oaio_id']}/{obj['client_stamp']}/{path}", data)
    assert session.post("register/", json=obj).status_code == 200
    return obj["oaio_id"]


def start_upload(session: Any, name: str, data: bytes) -> None:
    """An unfinished upload of ``name`` holding the first half of ``data``."""
    upload_id = new_id()
    assert create(session, name, data, upload_id, inline=False).status_code == 200
    assert send(session, name, upload_id, data[: len(data) // 2]).status_code == 200


def test_deleting_an_object_drops_its_blobs_and_uploads(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice, bob = sessions["alice"], sessions["bob"]
    oaio_id = register(alice, "alice", "doc", ("a.txt", b"only here"), ("sub/b.txt", b"also copied"))
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "D"}).ok
    names = [item["name"] for item in alice.get(B + "list/", params={"prefix": oaio_id}).json()["items"]]
    assert alice.post(B + "copy/", json={"src": names[1], "dst": "mine/kept"}).ok  # a private name, same content
    start_upload(bob, f"{oaio_id}/{STAMP}/unfinished.bin", os.urandom(10_000))
    assert content_files(hub) == {sha(b"only here"), sha(b"also copied")} and len(upload_files(hub)) == 1

    assert bob.post("delete/", json={"oaio_id": oaio_id}).status_code == 200

    assert blob_rows(hub) == [("alice", "mine/kept", "alice")] and blob_rows(hub, BlobUpload) == []
    assert content_files(hub) == {sha(b"also copied")} and upload_files(hub) == []
    assert download(alice, "mine/kept").content == b"also copied"
    for session in (alice, bob):  # nothing is left under the id, not even for the user who minted it
        assert session.get(B + "metadata/" + quote(names[0])).status_code == 404
        assert session.get(B + "list/", params={"prefix": oaio_id}).json()["items"] == []
    put_blob(alice, names[0], b"a fresh start")  # the minter may use the id again
    assert download(alice, names[0]).content == b"a fresh start"


class FailingAttachment:
    """Fails inside the delete's transaction, after the blob store dropped its rows (injected failure)."""

    @contextlib.contextmanager
    def removing(self) -> Iterator[Callable[[Any, Removal], None]]:
        def fail(_db: Any, _removal: Removal) -> None:
            raise RuntimeError("injected failure after the blob rows were dropped")

        yield fail


def test_a_refused_or_failed_delete_keeps_every_blob(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    alice, carol = sessions["alice"], sessions["carol"]
    oaio_id = register(alice, "alice", "doc", ("a.txt", b"stays"))
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "carol", "access_right": "U"}).ok
    start_upload(alice, f"{oaio_id}/{STAMP}/unfinished.bin", os.urandom(10_000))
    [name] = [item["name"] for item in carol.get(B + "list/", params={"prefix": oaio_id}).json()["items"]]
    before, files = db_snapshot(hub), (content_files(hub), upload_files(hub))

    assert carol.post("delete/", json={"oaio_id": oaio_id}).status_code == 403  # U may not delete
    assert hub.service is not None
    failing = FailingAttachment()
    hub.service.attach(failing)
    try:
        assert alice.post("delete/", json={"oaio_id": oaio_id}).status_code == 500
        alice.close()  # the hub closes a connection after an internal error: start a new one
        assert alice.post("wipe_user/", json={"Uid": "alice"}).status_code == 500
        alice.close()
    finally:
        hub.service.attachments.remove(failing)
    assert db_snapshot(hub) == before and (content_files(hub), upload_files(hub)) == files
    assert download(carol, name).content == b"stays"
    assert alice.post("delete/", json={"oaio_id": oaio_id}).ok  # and once nothing fails, everything goes
    assert blob_rows(hub) == [] and content_files(hub) == set() and upload_files(hub) == []
    assert carol.get(B + "metadata/" + quote(name)).status_code == 404


def fill_bobs_blobs(hub: HubServer, sessions: dict[str, Any]) -> str:
    """Bob's blobs of every kind (and alice's beside them); the id of the object bob shares with alice."""
    alice, bob = sessions["alice"], sessions["bob"]
    put_blob(alice, "scratch/p", b"same bytes")  # alice's private name, content shared with bob's
    put_blob(bob, "scratch/p", b"same bytes")
    put_blob(bob, "scratch/q", b"bob's private")
    put_blob(bob, f"{minted('bob')}/{STAMP}/m", b"minted, never registered")
    start_upload(bob, "scratch/unfinished", os.urandom(5000))
    register(bob, "bob", "solo", ("s.txt", b"bob's sole object"))
    shared = register(bob, "bob", "shared", ("t.txt", b"shared with alice"))
    assert bob.post("subscribe/", json={"oaio_id": shared, "username": "alice", "access_right": "r"}).ok
    start_upload(bob, f"{shared}/{STAMP}/unfinished", os.urandom(5000))
    return shared


def check_bob_is_gone(hub: HubServer, alice: Any, shared: str) -> None:
    left = {sha(b"same bytes"), sha(b"shared with alice")}  # alice's private copy, and the object she reads
    assert content_files(hub) == left and upload_files(hub) == []
    assert blob_rows(hub, BlobUpload) == []
    rows = blob_rows(hub)
    assert [row for row in rows if row[0] == "bob"] == []
    assert [row[1].split("/", 1)[0] for row in rows if row[2] == "bob"] == [shared]  # the object stays, with files
    assert download(alice, "scratch/p").content == b"same bytes"
    [item] = alice.get(B + "list/", params={"prefix": shared}).json()["items"]
    assert download(alice, item["name"]).content == b"shared with alice"


def test_wipe_user_drops_their_private_unregistered_and_sole_object_blobs(
    hub: HubServer, sessions: dict[str, Any]
) -> None:
    shared = fill_bobs_blobs(hub, sessions)
    assert sessions["alice"].post("wipe_user/", json={"Uid": "bob"}).status_code == 200
    check_bob_is_gone(hub, sessions["alice"], shared)
    assert hub.service is not None
    with hub.service.sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(Object)) == 1


def test_admin_user_del_drops_the_blobs_too(
    db_url: str,
    hub: Any,
    sessions: dict[str, Any],
    hub_factory: Callable[..., Any],
    hub_session: Callable[..., Any],
) -> None:
    shared = fill_bobs_blobs(hub, sessions)
    hub.stop()  # the admin command works on the data folder of a stopped hub
    where = ["--data-dir", str(hub.data_dir), "--db-url", db_url, *blob_store_args(hub)]
    result = CliRunner().invoke(main, ["hub", "user", "del", "bob", *where])
    assert result.exit_code == 0, result.output
    again = hub_factory(db_url=db_url, data_dir=hub.data_dir, users=False)
    again.users = hub.users
    check_bob_is_gone(again, hub_session(again, "alice"), shared)


def test_leftovers_of_earlier_versions_stay_invisible_and_stray_upload_files_are_swept(
    hub: HubServer, sessions: dict[str, Any]
) -> None:
    assert hub.service is not None
    with hub.service.sessions.begin() as db:  # a blob an earlier version left behind when it deleted its object
        db.add(Blob(owner="", scope="legacy", name="legacy/x", name_hash=sha256_text("legacy/x"), sha256=sha(b"old"),
                    size=3, creator="alice", created=STAMP, expires=None))  # fmt: skip
    bob = sessions["bob"]
    assert bob.get(B + "list/").json()["items"] == []  # not shared with anyone, not bob's private blob
    assert bob.get(B + "metadata/legacy/x").status_code == 404

    uploads = hub.data_dir / "blobs" / "uploads"
    stray, fresh = uploads / ("0" * 64), uploads / ("1" * 64)  # no upload row names either
    stray.write_bytes(b"left by a data/ request that raced the removal of its upload")
    fresh.write_bytes(b"maybe an upload being created right now")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stray, (two_days_ago, two_days_ago))
    [store] = [part for part in hub.service.attachments if isinstance(part, BlobStore)]
    store.sweep()  # the first sweep of this hub runs at once
    assert not stray.exists() and fresh.exists()
