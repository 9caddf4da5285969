"""The blob store's batch routes (``put-many/``, ``get-many/``) over real HTTP, on SQLite and PostgreSQL: each item
stored and read as the single-file routes would (names, rights, dedup), per-item outcomes, and a bad-input sweep
where every malformed request answers 4xx JSON and stores nothing."""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Callable
from typing import Any

import pytest

from oaiod.hub.blobbatch import COUNT_HEADER, MAX_ITEMS, MEDIA_TYPE
from oaiod.hub.server import HubServer
from tests.hub.blobhelpers import (
    STAMP,
    B,
    blob_store_param,  # noqa: F401 - the fixture blob_store: each test on every content store
    create,
    download,
    minted,
    new_id,
    put_blob,
    sha,
    stored_content,
    wait_for_no_downloads,
)
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration


def batch_body(items: list[tuple[str, bytes]], **overrides: Any) -> bytes:
    """A put-many body: the item list line, then each item's bytes."""
    listed = [{"name": name, "size": len(data), "sha256": sha(data)} for name, data in items]
    line = json.dumps({"items": listed, **overrides}).encode()
    return line + b"\n" + b"".join(data for _name, data in items)


def put_many(session: Any, body: bytes | Any, **kwargs: Any) -> Any:
    headers = {"Content-Type": MEDIA_TYPE, **kwargs.pop("headers", {})}
    return session.post(B + "put-many/", data=body, headers=headers, **kwargs)


def post_with_content_length(hub: HubServer, session: Any, route: str, body: bytes, length: Any) -> tuple[int, bytes]:
    """POST ``body`` with a ``Content-Length`` of our choosing (requests always sends the true one)."""
    connection = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    try:
        connection.putrequest("POST", f"/api/{route}")
        cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in session.cookies)
        headers = {"Content-Type": MEDIA_TYPE, "Content-Length": str(length), "Cookie": cookies,
                   "X-CSRFToken": session.cookies.get("csrftoken"), **dict(session.headers)}  # fmt: skip
        for name, value in headers.items():
            if name.lower() not in ("accept-encoding", "connection", "user-agent", "accept"):
                connection.putheader(name, value)
        connection.endheaders()
        with contextlib.suppress(OSError):
            connection.send(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def get_many(session: Any, names: list[str]) -> tuple[Any, list[tuple[dict[str, Any], bytes]]]:
    """The answer and its frames: ``(line, bytes)`` per item."""
    answer = session.post(B + "get-many/", json={"names": names})
    frames: list[tuple[dict[str, Any], bytes]] = []
    if answer.status_code != 200:
        return answer, frames
    content, position = answer.content, 0
    while position < len(content):
        end = content.index(b"\n", position)
        line = json.loads(content[position:end])
        size = line.get("size", 0) if "error" not in line else 0
        frames.append((line, content[end + 1 : end + 1 + size]))
        position = end + 1 + size
    assert int(answer.headers[COUNT_HEADER]) == len(frames)
    return answer, frames


def test_put_many_stores_each_item_like_a_single_upload(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    scope = minted("alice")
    items = [(f"{scope}/{STAMP}/f{number}.txt", f"file {number}".encode() * number) for number in range(50)]
    items.append((f"{scope}/{STAMP}/same-as-f3", items[3][1]))  # same content: stored once
    answer = put_many(alice, batch_body(items))
    assert answer.status_code == 200, answer.text
    results = answer.json()["items"]
    assert [result["name"] for result in results] == [name for name, _data in items]
    for (name, data), result in zip(items, results, strict=True):
        assert (result["size"], result["sha256"], result["expires"]) == (len(data), sha(data), None), result
        assert download(alice, name).content == data
        assert alice.get(B + "metadata/" + name).json() == result
    assert len(stored_content(hub)) == 50  # 51 names, 50 contents (f0 is empty)
    assert not [path for path in (hub.data_dir / "blobs" / "uploads").iterdir()]  # nothing staged is left

    # replacing: the names point at the new content, the old content goes with its last name
    replaced = [(name, data + b"!") for name, data in items[:10]]
    assert put_many(alice, batch_body(replaced)).status_code == 200
    assert download(alice, items[5][0]).content == items[5][1] + b"!"
    assert put_many(alice, batch_body([])).json() == {"items": []}


def test_items_fail_one_by_one(hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]) -> None:
    alice, bob = sessions["alice"], sessions["bob"]
    stored = alice.post("register/", json=new_object("alice", text="x")).json()
    oaio_id = stored["oaio_id"]
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "r"}).ok
    put_blob(alice, f"{oaio_id}/{STAMP}/kept", b"alice's")
    good = (f"{minted('bob')}/{STAMP}/mine", b"bob's own")
    read_only = (f"{oaio_id}/{STAMP}/kept", b"bob overwrites")
    invisible = (f"{minted('alice', 'other')}/{STAMP}/x", b"alice's space")
    body = bytearray(batch_body([good, read_only, invisible, (f"{minted('bob')}/{STAMP}/bad-hash", b"12345")]))
    body[-5:] = b"54321"  # the last item's bytes do not match its sha256
    answer = put_many(bob, bytes(body))
    assert answer.status_code == 200, answer.text
    results = answer.json()["items"]
    assert results[0]["sha256"] == sha(good[1])
    assert (results[1]["status"], results[1]["error"]) == (403, "forbidden")
    assert (results[2]["status"], results[2]["error"]) == (404, "not_found")
    assert (results[3]["status"], results[3]["error"]) == (400, "bad_request") and "sha256" in results[3]["reason"]
    assert download(alice, read_only[0]).content == b"alice's"
    assert download(bob, good[0]).content == b"bob's own"
    assert download(bob, f"{minted('bob')}/{STAMP}/bad-hash").status_code == 404

    # get-many checks every name as download/ does
    _answer, frames = get_many(bob, [read_only[0], invisible[0], good[0], "scratch/missing"])
    assert [(line.get("status"), data) for line, data in frames] == [
        (None, b"alice's"), (404, b""), (None, b"bob's own"), (404, b"")
    ]  # fmt: skip
    assert frames[0][0] == {"name": read_only[0], "size": 7, "sha256": sha(b"alice's")}
    wait_for_no_downloads(hub)


def test_get_many_answers_a_prefix_within_the_budget(hub_factory: Callable[..., Any], hub_session: Callable) -> None:
    hub = hub_factory(body_limit=100_000)
    alice = hub_session(hub, "alice")
    names = [f"scratch/{number}" for number in range(5)]
    sizes = [30_000, 30_000, 30_000, 150_000, 30_000]
    items = [(name, bytes([number]) * size) for number, (name, size) in enumerate(zip(names, sizes, strict=True))]
    for name, data in items:
        put_blob(alice, name, data) if len(data) < 60_000 else _put_large(alice, name, data)
    _answer, frames = get_many(alice, names)
    # the 4th is too large alone (413 with its size: fetch it singly); a 5th 30 kB item would pass 100 kB
    assert [line["name"] for line, _data in frames] == names[:4]
    assert [data for _line, data in frames[:3]] == [data for _name, data in items[:3]]
    assert frames[3] == ({"name": names[3], "status": 413, "error": "too_large", "reason": frames[3][0]["reason"],
                          "size": 150_000, "sha256": sha(items[3][1])}, b"")  # fmt: skip
    _answer, frames = get_many(alice, names[4:])
    assert frames == [({"name": names[4], "size": 30_000, "sha256": sha(items[4][1])}, items[4][1])]
    assert get_many(alice, [])[1] == []
    wait_for_no_downloads(hub)


def _put_large(session: Any, name: str, data: bytes) -> None:
    from tests.hub.blobhelpers import put_large

    put_large(session, name, data)


def test_a_download_in_flight_keeps_its_content_when_deleted(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice = sessions["alice"]
    data = b"z" * 3_000_000
    put_blob_many = put_many(alice, batch_body([("scratch/big", data), ("scratch/small", b"s")]))
    assert put_blob_many.status_code == 200
    answer = alice.post(B + "get-many/", json={"names": ["scratch/big", "scratch/small"]}, stream=True)
    first = answer.raw.read(100)
    assert alice.delete(B + "object/scratch/big").json() == {"deleted": True}
    rest = answer.raw.read()
    assert data in first + rest
    wait_for_no_downloads(hub)
    assert sha(data) not in stored_content(hub)  # gone with its reader


def test_bad_input_answers_4xx_json_and_stores_nothing(
    hub_factory: Callable[..., Any], hub_session: Callable[..., Any], db_snapshot: Callable[..., Any], db_url: str
) -> None:
    hub = hub_factory(db_url=db_url, body_limit=300_000)
    alice = hub_session(hub, "alice")
    anonymous = hub_session(hub, "bob", login=False)
    put_blob(alice, "scratch/kept", b"kept")
    open_id = new_id()
    assert create(alice, "scratch/open", b"0123456789", open_id, inline=False).status_code == 200
    before = db_snapshot(hub)
    good = [("scratch/a", b"aaaa"), ("scratch/b", b"bb")]
    body = batch_body(good)
    line = body[: body.index(b"\n")]
    item = {"name": "scratch/a", "size": 4, "sha256": sha(b"aaaa")}

    def listed(*entries: Any) -> bytes:
        return json.dumps({"items": list(entries)}).encode() + b"\n"

    cases: list[tuple[str, Any, dict[str, Any]]] = [
        ("truncated", body[:-1], {}),
        ("extra bytes", body + b"x", {}),
        ("no newline", line, {}),
        ("empty body", b"", {}),
        ("wrong size", listed({**item, "size": 3}) + b"aaaa", {}),
        ("size negative", listed({**item, "size": -1}), {}),
        ("size bool", listed({**item, "size": True}) + b"a", {}),
        ("size float", listed({**item, "size": 4.0}) + b"aaaa", {}),
        ("size huge", listed({**item, "size": 1 << 60}), {}),
        ("sha upper", listed({**item, "sha256": sha(b"aaaa").upper()}) + b"aaaa", {}),
        ("sha short", listed({**item, "sha256": "ab"}) + b"aaaa", {}),
        ("extra key", listed({**item, "expires": None}) + b"aaaa", {}),
        ("missing key", listed({"name": "scratch/a", "size": 4}) + b"aaaa", {}),
        ("item not object", listed(["scratch/a", 4]) + b"aaaa", {}),
        ("items not list", json.dumps({"items": {"a": 1}}).encode() + b"\n", {}),
        ("extra top key", json.dumps({"items": [], "x": 1}).encode() + b"\n", {}),
        ("top level list", b"[]\n", {}),
        ("not json", b"{items\n", {}),
        ("NaN", b'{"items": NaN}\n', {}),
        ("bad utf-8", b'{"items": "\xff"}\n', {}),
        ("deep", b"[" * 100_000 + b"]" * 100_000 + b"\n", {}),
        ("duplicate names", listed(item, item) + b"aaaaaaaa", {}),
        ("too many items", listed(*[{**item, "name": f"scratch/{n}", "size": 0} for n in range(MAX_ITEMS + 1)]), {}),
        ("over the limit", listed({**item, "size": 400_000}) + b"a" * 400_000, {}),
        ("over the limit chunked", (part for part in [listed({**item, "size": 400_000})] + [b"a" * 4000] * 100), {}),
        ("item list too long", b'{"items": [' + b" " * (5 << 20) + b"]}\n", {}),
        ("text/plain", body, {"headers": {"Content-Type": "text/plain"}}),
        ("no csrf", body, {"headers": {"X-CSRFToken": "wrong"}}),
        ("no session", body, {"as": anonymous}),
    ]
    for unsafe in ("/abs", "a/../b", "a//b", "a/./b", "tab\there", "back\\slash", "a/", "", ".oaiod-tmp-1/x", "a\x00b",
                   "x" * 300 + "/y", 5, None):  # fmt: skip
        cases.append((f"unsafe name {str(unsafe)[:12]!r}", listed({**item, "name": unsafe}) + b"aaaa", {}))
    for lie in (len(body) - 1, len(body) + 10):
        status, answer_body = post_with_content_length(hub, alice, B + "put-many/", body, lie)
        assert 400 <= status < 500 and json.loads(answer_body)["error"], f"Content-Length {lie}: {status}"
    # Refused by the HTTP server while it parses the head: no body is sent, since bytes the server
    # never reads make its close a TCP reset that can overtake the 400 answer.
    assert post_with_content_length(hub, alice, B + "put-many/", b"", "12x")[0] == 400
    statuses = {}
    for label, data, kwargs in cases:
        session = kwargs.pop("as", alice)
        answer = put_many(session, data, **kwargs)
        statuses[label] = answer.status_code
        assert 400 <= answer.status_code < 500, f"{label}: {answer.status_code} {answer.text[:200]}"
        assert answer.json()["error"] and answer.json()["reason"], label
    assert statuses["over the limit"] == statuses["over the limit chunked"] == 413
    assert statuses["text/plain"] == 415 and statuses["no session"] == 401
    get_cases: list[tuple[str, Any]] = [
        ("names not list", {"names": "scratch/kept"}),
        ("names missing", {}),
        ("extra key", {"names": [], "x": 1}),
        ("duplicate", {"names": ["scratch/kept", "scratch/kept"]}),
        ("too many", {"names": [f"scratch/{n}" for n in range(MAX_ITEMS + 1)]}),
        ("unsafe", {"names": ["../x"]}),
        ("not a string", {"names": [5]}),
    ]
    for label, get_body in get_cases:
        answer = alice.post(B + "get-many/", json=get_body)
        assert 400 <= answer.status_code < 500, f"get {label}: {answer.status_code} {answer.text[:200]}"
        assert answer.json()["error"], label
    answer = alice.post(B + "get-many/", data=b'{"names": []}', headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415
    assert anonymous.post(B + "get-many/", json={"names": ["scratch/kept"]}).status_code == 401
    after = db_snapshot(hub)
    after.pop("blob_uploads"), before.pop("blob_uploads")  # only an unfinished upload's deadline may move
    assert after == before
    assert not list((hub.data_dir / "blobs" / "uploads").glob("batch-*"))
    assert download(alice, "scratch/kept").content == b"kept"
    assert put_many(alice, body).status_code == 200  # and the hub still takes a good batch


def test_the_batch_routes_answer_a_get_with_the_csrf_cookie(hub: HubServer, sessions: dict[str, Any]) -> None:
    import requests

    for route in ("put-many/", "get-many/"):
        answer = requests.get(f"{hub.url}{B}{route}", timeout=10)
        assert answer.status_code == 200 and answer.cookies.get("csrftoken"), route
    assert "blob-batch" in sessions["alice"].get("hub/features/").json()["features"]
