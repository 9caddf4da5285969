"""The blob store's prefix copy, ``POST hub/blobs/copy-prefix/``, over real HTTP on SQLite and PostgreSQL, with
local and S3 contents: a version carried forward by reference (no bytes move, and the copies outlive the source's
removal), ``exclude`` honoured, the access rules of ``copy/``, 4xx JSON for bad input, idempotent, and the ``Hub``
storage backend's ``copy_prefix`` as one request whatever the folder holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oaiod.hub.blobs import MAX_COPY_EXCLUDE
from oaiod.hub.server import HubServer
from oaiod.storage.errors import ObjectNotFound, StoragePermissionDenied
from oaiod.storage.hub import HubBackend
from tests.hub.blobhelpers import (
    STAMP,
    B,
    blob_store_param,  # noqa: F401 - the fixture blob_store: each test on every content store
    download,
    minted,
    put_blob,
    stored_content,
)
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration

NEXT = "20250101120000123457"


def copy_prefix(session: Any, src: str, dst: str, exclude: list[str] | None = None) -> Any:
    return session.post(B + "copy-prefix/", json={"src": src, "dst": dst, "exclude": exclude or []})


def test_a_version_is_carried_by_reference_but_the_excluded_files(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    scope = minted("alice")
    old = {f"f{i} ä/{i}.txt": f"content {i}".encode() for i in range(6)}
    for path, data in old.items():
        put_blob(alice, f"{scope}/{STAMP}/{path}", data)
    put_blob(alice, f"{scope}/{STAMP}1/beside", b"a folder beside the source")
    stored = len(stored_content(hub))
    answer = copy_prefix(alice, f"{scope}/{STAMP}", f"{scope}/{NEXT}", ["f1 ä/1.txt", "f4 ä/4.txt", "nothing"])
    assert answer.status_code == 200 and answer.json() == {"copied": 4}, answer.text
    listed = alice.get(B + "list/", params={"prefix": f"{scope}/{NEXT}"}).json()["items"]
    assert sorted(item["name"] for item in listed) == sorted(
        f"{scope}/{NEXT}/{path}" for path in old if path not in ("f1 ä/1.txt", "f4 ä/4.txt")
    )
    assert len(stored_content(hub)) == stored  # names only: no content stored again
    again = copy_prefix(alice, f"{scope}/{STAMP}", f"{scope}/{NEXT}", ["f1 ä/1.txt", "f4 ä/4.txt"])
    assert again.json() == {"copied": 4}  # a retry after a lost answer is harmless
    assert len(alice.get(B + "list/", params={"prefix": f"{scope}/{NEXT}"}).json()["items"]) == 4
    assert alice.delete(B + f"prefix/{scope}/{STAMP}").json() == {"deleted": 6}  # the old version's gc
    for path, data in old.items():
        if path not in ("f1 ä/1.txt", "f4 ä/4.txt"):
            assert download(alice, f"{scope}/{NEXT}/{path}").content == data
    assert len(stored_content(hub)) == stored - 2  # the excluded files' contents went with their last name
    assert copy_prefix(alice, f"{scope}/{STAMP}", f"{scope}/later").json() == {"copied": 0}  # an empty folder


def test_access_rules_are_those_of_copy(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    alice, bob, carol = sessions["alice"], sessions["bob"], sessions["carol"]
    obj = new_object("alice")
    oaio_id, stamp = obj["oaio_id"], obj["client_stamp"]
    put_blob(alice, f"{oaio_id}/{stamp}/file.txt", b"shared")
    assert alice.post("register/", json=obj).status_code == 200
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "r"}).ok
    put_blob(bob, "bobs/v1/a", b"bob's")
    before = db_snapshot(hub)
    refused = copy_prefix(bob, "bobs/v1", f"{oaio_id}/{NEXT}")  # bob may read the object, not write it
    assert refused.status_code == 403 and refused.json()["name"] == f"{oaio_id}/{NEXT}"
    unseen = copy_prefix(carol, f"{oaio_id}/{stamp}", "carols/copy")  # carol is not subscribed
    assert unseen.status_code == 404 and unseen.json()["name"] == f"{oaio_id}/{stamp}"
    assert copy_prefix(carol, "bobs/v1", "carols/copy").json() == {"copied": 0}  # carol's own private space
    assert copy_prefix(carol, "carols/x", f"{minted('bob')}/{STAMP}").status_code == 404  # not carol's to write
    with HubBackend.from_args({"url": hub.url, "username": "bob", "password": hub.users["bob"]}) as backend:
        with pytest.raises(StoragePermissionDenied) as caught:
            backend.copy_prefix("bobs/v1", f"{oaio_id}/{NEXT}")
        assert caught.value.key == f"{oaio_id}/{NEXT}"
    carols = HubBackend.from_args({"url": hub.url, "username": "carol", "password": hub.users["carol"]})
    with carols, pytest.raises(ObjectNotFound):
        carols.copy_prefix(f"{oaio_id}/{stamp}", "carols/copy")
    assert db_snapshot(hub) == before
    assert copy_prefix(bob, f"{oaio_id}/{stamp}", "bobs/own").json() == {"copied": 1}  # read is enough to carry
    assert download(bob, "bobs/own/file.txt").content == b"shared"
    assert alice.get(B + "list/", params={"prefix": "bobs/own"}).json()["items"] == []  # bob's space stays his


def test_bad_input_answers_4xx_json_and_changes_nothing(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    alice = sessions["alice"]
    put_blob(alice, "scratch/v/a", b"a")
    before = db_snapshot(hub)
    ok = {"src": "scratch/v", "dst": "scratch/w", "exclude": []}
    bodies: list[Any] = [
        [],
        {},
        {"src": "scratch/v", "dst": "scratch/w"},
        {**ok, "extra": 1},
        {**ok, "src": 1},
        {**ok, "src": ""},
        {**ok, "dst": "../w"},
        {**ok, "src": "/abs"},
        {**ok, "dst": "x" * 300 + "/y"},
        {**ok, "dst": ".oaiod-tmp-1/x"},
        {**ok, "dst": "scratch/v"},
        {**ok, "dst": "scratch/v/inside"},
        {**ok, "src": "scratch/w/x"},
        {**ok, "dst": "scratch"},
        {**ok, "exclude": "a"},
        {**ok, "exclude": [1]},
        {**ok, "exclude": ["../a"]},
        {**ok, "exclude": ["tab\there"]},
        {**ok, "exclude": [f"{n}" for n in range(MAX_COPY_EXCLUDE + 1)]},
    ]
    for body in bodies:
        answer = alice.post(B + "copy-prefix/", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"] in ("validation", "bad_request"), answer.text
    huge = {**ok, "exclude": ["y" * 250 + f"/{n}" for n in range(20_000)]}
    assert alice.post(B + "copy-prefix/", json=huge).status_code == 413
    not_json = alice.post(B + "copy-prefix/", data=b"src=scratch/v", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415
    broken = alice.post(B + "copy-prefix/", data=b'{"src": [', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "bad_request"
    assert db_snapshot(hub) == before


def test_the_backend_carries_a_large_folder_in_one_request(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    put_blob(alice, "scratch/source", b"one content")
    pairs = [("scratch/source", f"scratch/v1/{n} ä") for n in range(2500)]
    with HubBackend.from_args({"url": hub.url, "username": "alice", "password": hub.users["alice"]}) as backend:
        backend.copy_many(pairs)
        backend.http.reset_timings()
        assert backend.copy_prefix("scratch/v1", "scratch/v2", exclude={"7 ä", "2499 ä"}) == 2498
        sent = list(backend.http.timings)
        assert len(sent) == 1 and "/copy-prefix/" in sent[0].url and sent[0].status == 200
        assert len(list(backend.list("scratch/v2"))) == 2498
        assert not backend.exists("scratch/v2/7 ä") and backend.get_bytes("scratch/v2/0 ä") == b"one content"
