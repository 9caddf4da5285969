"""The blob store's batch copy, ``POST hub/blobs/copy-many/``, over real HTTP on SQLite and PostgreSQL: one
transaction per request, the access rules of ``copy/`` for every pair, 4xx JSON for bad input, and the ``Hub``
storage backend's ``copy_many`` sending at most 1000 pairs per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from oaiod.hub.blobs import MAX_COPY_PAIRS
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
    sha,
    stored_content,
)
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration

NEXT = "20250101120000123457"


def copy_many(session: Any, pairs: list[tuple[str, str]]) -> Any:
    return session.post(B + "copy-many/", json={"pairs": [{"src": src, "dst": dst} for src, dst in pairs]})


def content_files(hub: HubServer) -> int:
    return len(stored_content(hub))


def test_copy_many_names_the_content_of_every_source(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    scope = minted("alice")
    old = {f"{scope}/{STAMP}/f{i} ä.txt": f"content {i}".encode() for i in range(3)}
    for name, data in old.items():
        put_blob(alice, name, data)
    put_blob(alice, f"{scope}/{NEXT}/f0 ä.txt", b"to be replaced")
    pairs = [(f"{scope}/{STAMP}/f{i} ä.txt", f"{scope}/{NEXT}/f{i} ä.txt") for i in range(3)]
    pairs.append((f"{scope}/{STAMP}/f1 ä.txt", "mine/private"))
    answer = copy_many(alice, pairs)
    assert answer.status_code == 200 and answer.json() == {"copied": 4}, answer.text
    for src, dst in pairs:
        assert download(alice, dst).content == old[src]
        meta = alice.get(B + "metadata/" + quote(dst)).json()
        assert (meta["name"], meta["sha256"]) == (dst, sha(old[src]))
    assert content_files(hub) == 3  # the replaced content went; nothing was stored twice
    assert copy_many(alice, pairs).json() == {"copied": 4}  # idempotent
    assert copy_many(alice, []).json() == {"copied": 0}


def test_a_missing_source_is_404_naming_it_and_nothing_changes(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    alice = sessions["alice"]
    put_blob(alice, "scratch/a", b"a")
    before = db_snapshot(hub)
    answer = copy_many(alice, [("scratch/a", "scratch/b"), ("scratch/missing ü", "scratch/c")])
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found" and answer.json()["name"] == "scratch/missing ü"
    assert db_snapshot(hub) == before  # one transaction: scratch/b was not made either


def test_access_rules_are_those_of_copy_for_every_pair(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    alice, bob, carol = sessions["alice"], sessions["bob"], sessions["carol"]
    obj = new_object("alice")
    oaio_id = obj["oaio_id"]
    name = f"{oaio_id}/{obj['client_stamp']}/file.txt"
    put_blob(alice, name, b"shared")
    assert alice.post("register/", json=obj).status_code == 200
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "r"}).ok
    put_blob(bob, "bobs/a", b"bob's")
    before = db_snapshot(hub)
    into_object = f"{oaio_id}/{NEXT}/file.txt"
    refused = copy_many(bob, [("bobs/a", "bobs/b"), (name, into_object)])  # bob may read the object, not write
    assert refused.status_code == 403 and refused.json()["name"] == into_object
    unseen = copy_many(carol, [(name, "carols/copy")])  # carol is not subscribed: as if it did not exist
    assert unseen.status_code == 404 and unseen.json()["name"] == name
    mint = copy_many(carol, [("carols/x", f"{minted('bob')}/{STAMP}/f")])  # not carol's to write (nor read)
    assert mint.status_code == 404
    with HubBackend.from_args({"url": hub.url, "username": "bob", "password": hub.users["bob"]}) as backend:
        with pytest.raises(StoragePermissionDenied) as caught:
            backend.copy_many([("bobs/a", "bobs/b"), (name, into_object)])
        assert caught.value.key == into_object
    assert db_snapshot(hub) == before
    assert copy_many(bob, [(name, "bobs/own copy"), ("bobs/a", "bobs/b")]).json() == {"copied": 2}  # read is enough
    assert download(bob, "bobs/own copy").content == b"shared"
    assert alice.get(B + "metadata/bobs/b").status_code == 404  # bob's private space stays his


def test_bad_input_answers_4xx_json_and_changes_nothing(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    alice = sessions["alice"]
    put_blob(alice, "scratch/a", b"a")
    before = db_snapshot(hub)
    pair = {"src": "scratch/a", "dst": "scratch/b"}
    bodies: list[Any] = [
        [],
        {},
        {"pairs": "scratch/a"},
        {"pairs": [pair], "extra": 1},
        {"pairs": [["scratch/a", "scratch/b"]]},
        {"pairs": [{"src": "scratch/a"}]},
        {"pairs": [{**pair, "more": 1}]},
        {"pairs": [{"src": 1, "dst": "scratch/b"}]},
        {"pairs": [{"src": "scratch/a", "dst": "../b"}]},
        {"pairs": [{"src": "/abs", "dst": "scratch/b"}]},
        {"pairs": [{"src": "scratch/a", "dst": "x" * 300 + "/y"}]},
        {"pairs": [{"src": "scratch/a", "dst": ".oaiod-tmp-1/x"}]},
        {"pairs": [{"src": "scratch/a", "dst": "tab\there"}]},
        {"pairs": [pair, {"src": "scratch/c", "dst": "scratch/b"}]},  # a dst twice
        {"pairs": [pair, {"src": "scratch/b", "dst": "scratch/d"}]},  # a dst that is also a src
        {"pairs": [{"src": "scratch/a", "dst": f"scratch/{n}"} for n in range(MAX_COPY_PAIRS + 1)]},
    ]
    for body in bodies:
        answer = alice.post(B + "copy-many/", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"] in ("validation", "bad_request"), answer.text
    huge = {"pairs": [{"src": "scratch/a", "dst": "scratch/" + "y" * 250 + f"/{n}"} for n in range(20_000)]}
    assert alice.post(B + "copy-many/", json=huge).status_code == 413
    not_json = alice.post(B + "copy-many/", data=b"src=scratch/a", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415
    broken = alice.post(B + "copy-many/", data=b'{"pairs": [', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "bad_request"
    assert db_snapshot(hub) == before


def test_a_full_batch_is_one_request_and_the_backend_sends_at_most_that(
    hub: HubServer, sessions: dict[str, Any]
) -> None:
    alice = sessions["alice"]
    put_blob(alice, "scratch/source", b"one content")
    full = [("scratch/source", f"scratch/full/{n}") for n in range(MAX_COPY_PAIRS)]
    assert copy_many(alice, full).json() == {"copied": MAX_COPY_PAIRS}
    backend = HubBackend.from_args({"url": hub.url, "username": "alice", "password": hub.users["alice"]})
    try:
        backend.http.reset_timings()
        done: list[int] = []
        backend.copy_many([("scratch/source", f"scratch/more/{n} ä") for n in range(2500)], progress=done.append)
        requests_sent = [timing for timing in backend.http.timings if "/copy-many/" in timing.url]
        assert len(requests_sent) == 3 and all(timing.status == 200 for timing in requests_sent)
        assert done == [1000, 1000, 500]
        assert len(list(backend.list("scratch/more"))) == 2500
        assert backend.get_bytes("scratch/more/2499 ä") == b"one content"
        with pytest.raises(ObjectNotFound) as caught:
            backend.copy_many([("scratch/source", "scratch/x"), ("scratch/gone", "scratch/y")])
        assert caught.value.key == "scratch/gone"
    finally:
        backend.close()
