"""The hub's blob store (``hub/blobs/``) over real HTTP: the object-service protocol, access rules, resume and
a bad-input sweep. The ``Hub`` storage backend's conformance lives in ``tests/storage``; here it is used for
the dropped-connection resume, injected by :class:`CuttingProxy` (a loopback TCP proxy that closes a
connection once after a set number of request bytes).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
import sqlalchemy as sa

from oaiod.hub.db import BlobUpload
from oaiod.hub.server import HubServer
from oaiod.storage.hub import HubBackend
from tests.hub.blobhelpers import (
    STAMP,
    B,
    blob_store_param,  # noqa: F401 - the fixture blob_store: each test on every content store
    create,
    download,
    minted,
    new_id,
    put_blob,
    send,
    sha,
    stored_content,
    wait_for_no_downloads,
)
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration


# -- protocol ---------------------------------------------------------------------------------------------------


def test_features_ping_and_csh_args_default(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    assert "blobs" in bob.get("hub/features/").json()["features"]
    assert bob.get(B + "ping").json() == {"alive": True}
    assert bob.get("csh_args/Hub").json() == {"url": hub.url}  # a fresh hub needs no storage configuration
    assert hub.service is not None
    hub.service.set_storage("Hub", {"url": "https://hub.example/api/"})
    assert bob.get("csh_args/Hub").json() == {"url": "https://hub.example/api/"}  # an explicit entry wins
    assert bob.get("csh_args/Other").status_code == 404
    anonymous = requests.get(hub.url + B + "ping", timeout=10)
    assert anonymous.status_code == 401


def test_inline_and_put_url_uploads_download_and_metadata(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    name = f"{minted('alice')}/{STAMP}/dir ä/file 1.txt"
    put_blob(alice, name, b"small")
    meta = alice.get(B + "metadata/" + quote(name)).json()
    assert (meta["name"], meta["size"], meta["sha256"], meta["expires"]) == (name, 5, sha(b"small"), None)
    assert download(alice, name).content == b"small"

    big, upload_id = os.urandom(300_000), new_id()
    answer = create(alice, name, big, upload_id, inline=False).json()
    put_url = answer["uploadMethod"]["putUrl"]
    assert parse_qs(urlsplit(put_url["url"]).query)["offset"] == ["0"] and put_url["url"].startswith(hub.url)
    assert send(alice, name, upload_id, big[:100_000]).json() == {"received": 100_000}
    status = alice.get(B + "upload-status/" + quote(name), params={"uploadId": upload_id}).json()
    assert status == {"received": 100_000, "size": 300_000}
    assert download(alice, name).content == b"small"  # the old object stays readable until the new one finishes
    assert send(alice, name, upload_id, big[100_000:], offset=100_000).json() == {"received": 300_000}
    finish = alice.post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})
    assert finish.json()["sha256"] == sha(big)
    again = alice.post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})
    assert again.status_code == 200  # idempotent
    assert download(alice, name).content == big
    partial = alice.get(B + "download/" + quote(name), headers={"Range": "bytes=10-19"})
    assert partial.status_code == 206 and partial.content == big[10:20]

    start = alice.put(B + "start-download/" + quote(name), json={"acceptDownloadMethods": {"simple": True}}).json()
    assert start["method"] == "simple" and start["hashes"] == {"sha256": sha(big)} and start["size"] == len(big)
    assert alice.get(start["url"]).content == big
    none = alice.put(B + "start-download/" + quote(name), json={"acceptDownloadMethods": {"ftp": True}})
    assert none.status_code == 406


def test_resume_rules_and_a_second_upload_id(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    name, data, first = "scratch/resume.bin", os.urandom(50_000), new_id()
    assert create(alice, name, data, first, inline=False).status_code == 200
    assert create(alice, name, data, first, inline=False).status_code == 200  # renewing with the same id
    assert create(alice, name, data, new_id(), inline=False).status_code == 409  # another uploadId: refused
    assert send(alice, name, first, data[:1000]).json()["received"] == 1000
    gap = send(alice, name, first, data[2000:], offset=2000)
    assert gap.status_code == 409 and gap.json()["received"] == 1000
    assert send(alice, name, first, data[500:], offset=500).json()["received"] == 50_000  # overlap: rewritten
    incomplete_other = new_id()
    assert send(alice, name, incomplete_other, b"x").status_code == 409  # wrong uploadId for the data
    assert alice.post(B + "finish-upload/" + quote(name), json={"uploadId": first}).status_code == 200
    assert download(alice, name).content == data
    assert create(alice, name, data, new_id()).status_code == 200  # a finished name may be uploaded again
    assert alice.delete(B + "upload/" + quote(name)).json() == {"cancelled": True}
    assert download(alice, name).content == data


def test_sha256_or_size_mismatch_is_refused_and_the_upload_discarded(hub: HubServer, sessions: dict[str, Any]):
    alice = sessions["alice"]
    name, upload_id = "scratch/bad.bin", new_id()
    body = {"uploadId": upload_id, "sha256": sha(b"expected"), "size": 8,
            "proposedUploadMethods": {"putUrl": {"contentType": "x", "contentLength": 8}}}  # fmt: skip
    assert alice.put(B + "upload/" + quote(name), json=body).status_code == 200
    assert send(alice, name, upload_id, b"123456789").status_code == 413  # more than announced
    assert send(alice, name, upload_id, b"short").json()["received"] == 5
    early = alice.post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})
    assert early.status_code == 409 and early.json()["received"] == 5  # incomplete: kept for a resume
    assert send(alice, name, upload_id, b"ly!", offset=5).json()["received"] == 8
    wrong = alice.post(B + "finish-upload/" + quote(name), json={"uploadId": upload_id})
    assert wrong.status_code == 400 and "sha256" in wrong.json()["reason"]
    assert alice.get(B + "metadata/" + quote(name)).status_code == 404
    assert alice.get(B + "upload-status/" + quote(name), params={"uploadId": upload_id}).status_code == 404
    assert list((hub.data_dir / "blobs" / "uploads").iterdir()) == []
    lie = new_id()
    assert create(alice, name, b"abc", lie, sha256=sha(b"abd")).status_code == 200  # inline, with a wrong hash
    assert alice.post(B + "finish-upload/" + quote(name), json={"uploadId": lie}).status_code == 400
    assert alice.get(B + "metadata/" + quote(name)).status_code == 404


def test_copy_deletes_and_content_is_stored_once(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    put_blob(alice, "scratch/a", b"same bytes")
    assert alice.post(B + "copy/", json={"src": "scratch/a", "dst": "scratch/sub/b"}).status_code == 200
    put_blob(alice, "scratch/c", b"same bytes")
    assert len(stored_content(hub)) == 1
    listed = alice.get(B + "list/", params={"prefix": "scratch"}).json()
    assert sorted(item["name"] for item in listed["items"]) == ["scratch/a", "scratch/c", "scratch/sub/b"]
    assert listed["next"] is None
    page = alice.get(B + "list/", params={"prefix": "scratch", "limit": 2}).json()
    rest = alice.get(B + "list/", params={"prefix": "scratch", "after": page["next"]}).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 1 and rest["next"] is None
    assert alice.delete(B + "object/scratch/a").json() == {"deleted": True}
    assert alice.delete(B + "object/scratch/a").json() == {"deleted": False}  # idempotent
    assert alice.delete(B + "prefix/scratch").json() == {"deleted": 2}
    assert not stored_content(hub)
    assert alice.post(B + "copy/", json={"src": "scratch/a", "dst": "scratch/z"}).status_code == 404


def test_unfinished_uploads_expire_after_a_day(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    name, first = "scratch/stale", new_id()
    assert create(alice, name, b"data", first, inline=False).status_code == 200
    assert create(alice, name, b"data", new_id(), inline=False).status_code == 409
    assert hub.service is not None
    with hub.service.sessions.begin() as db:
        db.execute(sa.update(BlobUpload).values(deadline="20230101000000000000"))
    assert create(alice, name, b"data", new_id(), inline=False).status_code == 200  # the stale one was dropped


# -- access ---------------------------------------------------------------------------------------------------


def test_unregistered_ids_belong_to_the_user_who_minted_them(sessions: dict[str, Any]) -> None:
    alice, bob = sessions["alice"], sessions["bob"]
    mine = f"{minted('alice')}/{STAMP}/f"
    put_blob(alice, mine, b"alice's")
    assert download(alice, mine).content == b"alice's"
    for answer in (
        bob.get(B + "metadata/" + quote(mine)),
        download(bob, mine),
        create(bob, mine, b"bob's", new_id()),
        bob.delete(B + "object/" + quote(mine)),
        bob.put(B + "start-download/" + quote(mine), json={"acceptDownloadMethods": {"simple": True}}),
        bob.post(B + "copy/", json={"src": mine, "dst": "bobs/copy"}),
    ):
        assert answer.status_code == 404, answer.text  # bob learns nothing
    assert bob.get(B + "list/", params={"prefix": minted("alice")}).json()["items"] == []
    assert bob.get(B + "list/").json()["items"] == []
    impostor = f"{minted('alice', 'other')}/{STAMP}/f"
    assert create(bob, impostor, b"x", new_id()).status_code == 404  # bob cannot mint alice's ids


def test_private_keys_are_per_user(sessions: dict[str, Any]) -> None:
    alice, bob = sessions["alice"], sessions["bob"]
    put_blob(alice, "scratch/same-name", b"alice")
    put_blob(bob, "scratch/same-name", b"bob")
    assert download(alice, "scratch/same-name").content == b"alice"
    assert download(bob, "scratch/same-name").content == b"bob"
    assert [item["name"] for item in bob.get(B + "list/").json()["items"]] == ["scratch/same-name"]


def test_registered_objects_follow_subscription_rights(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice, bob, carol = sessions["alice"], sessions["bob"], sessions["carol"]
    obj = new_object("alice")
    oaio_id = obj["oaio_id"]
    name = f"{oaio_id}/{obj['client_stamp']}/file.txt"
    put_blob(alice, name, b"before register")  # files go up before register/
    assert alice.post("register/", json=obj).status_code == 200
    assert bob.get(B + "metadata/" + quote(name)).status_code == 404  # not subscribed
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "r"}).ok
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "carol", "access_right": "U"}).ok
    assert download(bob, name).content == b"before register"
    assert [item["name"] for item in bob.get(B + "list/", params={"prefix": oaio_id}).json()["items"]] == [name]
    assert [item["name"] for item in bob.get(B + "list/").json()["items"]] == [name]
    other = f"{oaio_id}/{STAMP}/new.txt"
    assert create(bob, other, b"x", new_id()).status_code == 403  # read-only
    assert bob.delete(B + "object/" + quote(name)).status_code == 403
    assert bob.delete(B + "prefix/" + quote(oaio_id)).status_code == 403
    assert bob.post(B + "copy/", json={"src": name, "dst": other}).status_code == 403
    assert bob.post(B + "copy/", json={"src": name, "dst": "bobs/own-copy"}).status_code == 200  # read is enough
    put_blob(carol, other, b"carol's version")  # U may write
    assert download(alice, other).content == b"carol's version"
    assert carol.delete(B + "object/" + quote(other)).json() == {"deleted": True}  # and delete
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "x"}).ok
    assert download(bob, name).status_code == 404  # the subscription is gone, and with it the access


def test_supervisor_gets_no_extra_rights(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob, alice = sessions["bob"], sessions["alice"]  # alice is a supervisor
    name = f"{minted('bob')}/{STAMP}/f"
    put_blob(bob, name, b"bob's")
    assert alice.get(B + "metadata/" + quote(name)).status_code == 404


def test_changing_routes_answer_a_get_with_json_and_the_csrf_cookie(hub: HubServer) -> None:
    name = quote(f"{minted('bob')}/{STAMP}/f ä")
    routes = [f"{route}/{name}" for route in ("upload", "data", "finish-upload", "start-download", "object")]
    for route in [*routes, "prefix/" + quote(minted("bob")), "copy/"]:
        answer = requests.get(hub.url + B + route, timeout=10)  # no session, no cookie yet
        assert answer.status_code == 200 and "cookie" in answer.json()["detail"], route
        assert answer.cookies.get("csrftoken"), route
    # the published client's habit: GET the URL it is about to change, then send that cookie's token
    with requests.Session() as client:
        url = hub.url + B + routes[0]
        token = client.get(url, timeout=10).cookies["csrftoken"]
        login = {"username": "bob", "password": hub.users["bob"]}
        assert client.post(hub.url + "login/", json=login, headers={"X-CSRFToken": token}, timeout=10).ok
        body = {"uploadId": new_id(), "sha256": sha(b""), "size": 0,
                "proposedUploadMethods": {"dataInline": {"contentType": "x", "objectData": ""}}}  # fmt: skip
        assert client.put(url, json=body, headers={"X-CSRFToken": token}, timeout=10).status_code == 200
        assert client.put(url, json=body, timeout=10).status_code == 403  # and without it: refused


# -- hostile input ----------------------------------------------------------------------------------------------


def test_bad_input_answers_4xx_json_and_changes_nothing(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    alice = sessions["alice"]
    good = f"{minted('alice')}/{STAMP}/ok"
    put_blob(alice, good, b"ok")
    good_id = new_id()
    assert create(alice, "scratch/open", b"0123456789", good_id, inline=False).status_code == 200
    before = db_snapshot(hub)
    body = {"uploadId": new_id(), "sha256": sha(b"x"), "size": 1,
            "proposedUploadMethods": {"dataInline": {"contentType": "x", "objectData": "eA=="}}}  # fmt: skip
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for bad_name in ("%2Fabs", "a/%2E%2E/b", "a//b", "a/%2E/b", "tab%09here", "back%5Cslash", "a/", "x" * 300 + "/y",
                     ".oaiod-tmp-1/x", "a/%00b"):  # fmt: skip
        cases += [
            ("PUT", f"upload/{bad_name}", {"json": body}),
            ("GET", f"metadata/{bad_name}", {}),
            ("GET", f"download/{bad_name}", {}),
            ("DELETE", f"object/{bad_name}", {}),
            ("PUT", f"data/{bad_name}?uploadId={good_id}&offset=0", {"data": b"x"}),
        ]
    hostile_fields = [
        ("uploadId", "short"),
        ("uploadId", 5),
        ("sha256", "ABC"),
        ("size", -1),
        ("size", 1.5),
        ("size", True),
        ("size", 1 << 50),
        ("expires", "soon"),
        ("proposedUploadMethods", []),
    ]
    for key, value in hostile_fields:
        cases.append(("PUT", "upload/scratch/x", {"json": {**body, key: value}}))
    methods = body["proposedUploadMethods"]
    for variant in ({"dataInline": {"contentType": "x", "objectData": "***"}}, {"dataInline": {"objectData": "eA=="}},
                    {"dataInline": {"contentType": "x", "objectData": "eHg="}},  # 2 bytes, size 1
                    {"putUrl": {"contentType": "x", "contentLength": 2}}, {"ftp": {}}):  # fmt: skip
        cases.append(("PUT", "upload/scratch/x", {"json": {**body, "proposedUploadMethods": variant}}))
    cases += [
        ("PUT", "upload/scratch/x", {"json": {**body, "extra": 1}}),
        (
            "PUT",
            "upload/scratch/x",
            {"json": {**body, "proposedUploadMethods": methods}, "headers": {"X-CSRFToken": "no"}},
        ),
        ("PUT", "upload/scratch/x", {"data": b"{", "headers": {"content-type": "application/json"}}),
        ("PUT", "upload/scratch/x", {"data": b"[]", "headers": {"content-type": "text/plain"}}),
        (
            "PUT",
            "upload/scratch/x",
            {"data": b"{" + b" " * 300_000 + b"}", "headers": {"content-type": "application/json"}},
        ),
        ("PUT", "data/scratch/open?uploadId=short&offset=0", {"data": b"x"}),
        ("PUT", f"data/scratch/open?uploadId={good_id}&offset=-1", {"data": b"x"}),
        ("PUT", f"data/scratch/open?uploadId={good_id}&offset=x", {"data": b"x"}),
        ("PUT", f"data/scratch/open?uploadId={good_id}&offset=99", {"data": b"x"}),
        ("PUT", f"data/scratch/open?uploadId={good_id}&offset=0", {"data": b"x" * 11}),
        ("PUT", f"data/scratch/missing?uploadId={good_id}&offset=0", {"data": b"x"}),
        ("GET", "upload-status/scratch/open?uploadId=" + new_id(), {}),
        ("POST", "finish-upload/scratch/open", {"json": {"uploadId": new_id()}}),
        ("POST", "finish-upload/scratch/open", {"json": {}}),
        ("POST", "finish-upload/scratch/nothing", {"json": {"uploadId": new_id()}}),
        ("PUT", f"start-download/{quote(good)}", {"json": {"acceptDownloadMethods": []}}),
        ("PUT", f"start-download/{quote(good)}", {"json": {}}),
        ("PUT", "start-download/scratch/none", {"json": {"acceptDownloadMethods": {"simple": True}}}),
        ("POST", "copy/", {"json": {"src": good}}),
        ("POST", "copy/", {"json": {"src": good, "dst": "../x"}}),
        ("POST", "copy/", {"json": {"src": 1, "dst": "x/y"}}),
        ("GET", "list/?prefix=../x", {}),
        ("GET", "list/?limit=0", {}),
        ("GET", "list/?limit=100000", {}),
        ("GET", "list/?after=x", {}),
        ("DELETE", "prefix/a/%2E%2E/b", {}),
        ("GET", "nothing-here", {}),
        ("POST", "ping", {}),
        ("GET", f"list/?after={1 << 31}", {}),  # beyond a row id: PostgreSQL's integer would overflow
        ("GET", "list/?after=" + "9" * 30, {}),
        ("GET", "list/?after=-1", {}),
        ("GET", "list/?after=1e3", {}),
        ("PUT", f"data/scratch/open?uploadId={good_id}&offset={1 << 70}", {"data": b"x"}),
        ("DELETE", f"object/{quote(good)}", {"headers": {"X-CSRFToken": "wrong"}}),
        ("PUT", "upload/scratch/%ED%A0%80", {"json": {**body, "size": 2}}),  # a broken UTF-8 name, a broken body
        ("GET", "metadata/scratch/%FF%FE", {}),
    ]
    for bad_range in (
        "bytes=a-b",
        "bytes=5-2",
        "bytes=" + "9" * 5000 + "-",
        "items=0-1",
        "bytes=0-1,x",
        "bytes=",
        "bytes=2-",
        "bytes=-0",
        "bytes=0-0,9-",
    ):  # fmt: skip  (the object has 2 bytes)
        cases.append(("GET", f"download/{quote(good)}", {"headers": {"Range": bad_range}}))
    for method, route, kwargs in cases:
        answer = alice.request(method, B + route, timeout=30, **kwargs)
        assert 400 <= answer.status_code < 500, f"{method} {route}: {answer.status_code} {answer.text[:200]}"
        assert answer.json().get("error"), f"{method} {route}: {answer.text[:200]}"
    after = db_snapshot(hub)
    after.pop("blob_uploads"), before.pop("blob_uploads")  # only their deadlines may move: compare the rest
    assert after == before
    assert download(alice, good).content == b"ok"
    assert alice.get(B + "download/" + quote(good), headers={"Range": "bytes=-5"}).content == b"ok"  # suffix > size
    tail = alice.get(B + "download/" + quote(good), headers={"Range": "bytes=1-"})
    assert tail.status_code == 206 and tail.content == b"k"
    beyond = alice.get(B + "download/" + quote(good), headers={"Range": "bytes=2-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == "bytes */2"
    wait_for_no_downloads(hub)  # refused downloads hold nothing either
    status = alice.get(B + "upload-status/scratch/open", params={"uploadId": good_id}).json()
    assert status == {"received": 0, "size": 10}


# -- the backend's resume after a dropped connection ----------------------------------------------------------


class CuttingProxy:
    """A TCP proxy to ``port`` that closes both sides of a connection once, after ``cut_after`` bytes have passed
    it in all in one direction (requests, or with ``answers`` the hub's answers): a network drop in the middle
    of an upload or a download. Afterwards it forwards untouched."""

    def __init__(self, port: int, cut_after: int, *, answers: bool = False) -> None:
        self.port, self.cut_after, self.answers = port, cut_after, answers
        self.forwarded, self.cuts = 0, 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/api/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pipe, args=(upstream, client, self.answers), daemon=True).start()
            threading.Thread(target=self._pipe, args=(client, upstream, not self.answers), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while chunk := src.recv(64 * 1024):
                dst.sendall(chunk)
                if counted:
                    with self._lock:
                        self.forwarded += len(chunk)
                        cut = self.cuts == 0 and self.forwarded >= self.cut_after
                        self.cuts += cut
                    if cut:
                        break
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._server.close()


def test_backend_resumes_a_dropped_upload_from_the_confirmed_offset(hub: HubServer, tmp_path: Path) -> None:
    chunk = 256 * 1024
    proxy = CuttingProxy(hub.port, cut_after=700 * 1024)  # in the third chunk of a 1 MiB + 1 file
    source = tmp_path / "source"
    data = os.urandom(4 * chunk + 1)
    source.write_bytes(data)
    backend = HubBackend.from_args({"url": proxy.url, "username": "bob", "password": hub.users["bob"]})
    backend.chunk_size = chunk
    try:
        backend.put_file("scratch/resumed.bin", source)
        assert proxy.cuts == 1
        offsets = [int(parse_qs(urlsplit(t.url).query)["offset"][0]) for t in backend.http.timings
                   if "/data/" in t.url]  # fmt: skip
        assert any(offset % chunk for offset in offsets), offsets  # resumed mid-chunk, where the hub confirmed
        assert max(offsets) < len(data)
        assert backend.get_bytes("scratch/resumed.bin") == data
        assert backend.stat("scratch/resumed.bin").sha256 == sha(data)
    finally:
        backend.close()
        proxy.close()


def test_backend_resumes_a_dropped_download_with_range(hub: HubServer, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    args = {"url": hub.url, "username": "bob", "password": hub.users["bob"]}
    with HubBackend.from_args(args) as direct:
        direct.put_bytes("scratch/download.bin", data)
    proxy = CuttingProxy(hub.port, cut_after=1024 * 1024, answers=True)
    backend = HubBackend.from_args({**args, "url": proxy.url})
    try:
        folder = tmp_path / "downloads"
        folder.mkdir()
        backend.get_file("scratch/download.bin", folder / "back")
        assert proxy.cuts == 1
        assert (folder / "back").read_bytes() == data
        assert len([t for t in backend.http.timings if "/download/" in t.url]) == 2  # the second with Range
        assert [p.name for p in folder.iterdir()] == ["back"]
    finally:
        backend.close()
        proxy.close()


def test_backend_cancels_a_stale_upload_of_the_same_name(hub: HubServer, sessions: dict[str, Any], tmp_path: Path):
    bob = sessions["bob"]
    assert create(bob, "scratch/stale.bin", b"y" * 100_000, new_id(), inline=False).status_code == 200  # crashed
    backend = HubBackend.from_args({"url": hub.url, "username": "bob", "password": hub.users["bob"]})
    try:
        backend.put_bytes("scratch/stale.bin", b"z" * 100_000)
        assert backend.get_bytes("scratch/stale.bin") == b"z" * 100_000
    finally:
        backend.close()


def test_hub_csh_args_open_a_backend_on_a_shared_session(hub: HubServer) -> None:
    from oaiod.server_api import OaioServerApi

    api = OaioServerApi(hub.url, "carol", hub.users["carol"], device_id="dev1", app_id="testapp")
    try:
        backend = HubBackend.sharing(api.http, api.csh_args("Hub"))
        backend.put_bytes("scratch/shared", b"one login")
        assert backend.get_bytes("scratch/shared") == b"one login"
        assert backend.http.auth is api.http.auth
        backend.close()
    finally:
        api.close()
