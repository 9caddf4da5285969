"""Share links (oaiod.hub.links): made by D/C holders, fetched with a plain HTTP client and no account, password,
revoke, expiry, and every way a link stops working (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import requests

from oaiod.hub.server import HubServer
from tests.hub.sharehelpers import folder_object, new_files_version, zip_content

L = "hub/links/"
FILES = {"a.txt": b"alpha", "docs/b.md": b"# bravo\n", "docs/deep/c.bin": b"c" * 5000}


def make_link(session: Any, oaio_id: str, **body: Any) -> Any:
    return session.post(L, json={"oaio_id": oaio_id, **body})


def fetch(url: str, method: str = "GET", **kwargs: Any) -> requests.Response:
    """A plain HTTP client: no session, no cookie, no context header; waits while a zip is prepared."""
    deadline = time.monotonic() + 60
    while True:
        answer = requests.request(method, url, timeout=30, **kwargs)
        if answer.status_code != 202 or time.monotonic() > deadline:
            return answer
        assert int(answer.headers["Retry-After"]) > 0 and answer.json()["status"] == "preparing"
        time.sleep(0.05)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query="&".join(f"{key}={value}" for key, value in query.items())))


def test_file_and_folder_links(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    oaio_id = stored["oaio_id"]
    answer = make_link(bob, oaio_id, path="docs/b.md")
    assert answer.status_code == 200, answer.text
    link = answer.json()
    assert link["url"].startswith(hub.url + "hub/share/") and "bewit=" in link["url"] and not link["folder"]
    got = fetch(link["url"])
    assert got.status_code == 200 and got.content == b"# bravo\n"
    assert 'filename="b.md"' in got.headers["content-disposition"]
    assert got.headers["cache-control"] == "no-store" and got.headers["referrer-policy"] == "no-referrer"
    ranged = requests.get(link["url"], headers={"Range": "bytes=2-4"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == b"bra"
    folder = make_link(bob, oaio_id, path="docs").json()
    assert folder["folder"]
    zipped = fetch(folder["url"])
    assert zipped.status_code == 200, zipped.text
    assert zip_content(zipped.content) == {"docs/b.md": b"# bravo\n", "docs/deep/c.bin": b"c" * 5000}
    whole = fetch(make_link(bob, oaio_id).json()["url"])
    assert set(zip_content(whole.content)) == {f"work/{path}" for path in FILES}
    listed = bob.get(L, params={"oaio_id": oaio_id}).json()
    assert [item["state"] for item in listed] == ["active"] * 3


def test_pinned_and_newest(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    pinned = make_link(bob, stored["oaio_id"], path="a.txt", stamp=stored["client_stamp"]).json()
    newest = make_link(bob, stored["oaio_id"], path="a.txt").json()
    new_files_version(bob, stored, {"a.txt": b"ALPHA 2"})
    assert fetch(pinned["url"]).content == b"alpha"
    assert fetch(newest["url"]).content == b"ALPHA 2"
    new_files_version(bob, bob.get("oaio_stampz/").json()[0], {"other.txt": b"o"})
    assert fetch(newest["url"]).status_code == 404  # the newest version has no a.txt
    assert fetch(pinned["url"]).content == b"alpha"


def test_who_may_make_links(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob, carol, alice = sessions["bob"], sessions["carol"], sessions["alice"]
    stored = folder_object(bob, FILES)
    oaio_id = stored["oaio_id"]
    assert make_link(carol, oaio_id).status_code == 404  # not subscribed
    for right, status in (("r", 403), ("U", 403), ("D", 200)):
        assert bob.post("subscribe/", json={"oaio_id": oaio_id, "username": "carol", "access_right": right}).ok
        assert make_link(carol, oaio_id, path="a.txt").status_code == status, right
        assert carol.get(L, params={"oaio_id": oaio_id}).status_code == status
    carols = make_link(carol, oaio_id, path="a.txt").json()
    assert fetch(carols["url"]).status_code == 200
    # the creator loses the right to share: the link stops working; a supervisor gets no more
    assert bob.post("subscribe/", json={"oaio_id": oaio_id, "username": "carol", "access_right": "r"}).ok
    assert fetch(carols["url"]).status_code == 404
    assert make_link(alice, oaio_id).status_code == 404
    # bob (C) sees and revokes carol's link; carol may revoke her own
    assert {item["creator"] for item in bob.get(L, params={"oaio_id": oaio_id}).json()} == {"carol"}
    assert carol.delete(L + carols["id"]).json()["state"] == "revoked"
    assert sessions["alice"].delete(L + carols["id"]).status_code == 404


def test_revoke_expire_delete(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    oaio_id = stored["oaio_id"]
    link = make_link(bob, oaio_id, path="a.txt").json()
    assert fetch(link["url"]).status_code == 200
    revoked = bob.delete(L + link["id"])
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    gone = fetch(link["url"])
    assert gone.status_code == 410 and gone.json()["error"] == "gone"
    short = make_link(bob, oaio_id, path="a.txt", expires_in=60).json()
    expires = int(parse_qs(urlsplit(short["url"]).query)["expires"][0])
    assert expires - time.time() < 61
    # a URL whose expiry or signature was altered is no link at all
    assert fetch(with_query(short["url"], expires=str(expires + 3600))).status_code == 404
    assert fetch(with_query(short["url"], bewit="A" * 32)).status_code == 404
    assert fetch(hub.url + "hub/share/" + short["id"]).status_code == 404
    assert fetch(hub.url + "hub/share/..%2f..%2fetc?expires=1&bewit=x").status_code == 404
    other = make_link(bob, oaio_id, path="docs").json()
    assert bob.post("delete/", json={"oaio_id": oaio_id}).ok
    for url in (short["url"], other["url"]):
        assert fetch(url).status_code == 404


def test_password(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    link = make_link(bob, stored["oaio_id"], path="a.txt", password="s3cret pass").json()
    assert link["password"] and "s3cret" not in link["url"]
    needs = fetch(link["url"])
    assert needs.status_code == 401 and needs.json()["password_required"]
    assert fetch(link["url"], headers={"X-Oaiod-Link-Password": "wrong"}).status_code == 403
    assert fetch(link["url"], headers={"X-Oaiod-Link-Password": "s3cret pass"}).content == b"alpha"
    form = fetch(link["url"], "POST", data={"password": "s3cret pass"})
    assert form.status_code == 200 and form.content == b"alpha"
    cookie = form.cookies.get("oaiod_link")
    assert cookie  # a browser's next request needs no password
    assert fetch(link["url"], cookies={"oaiod_link": cookie}).content == b"alpha"
    assert fetch(link["url"], cookies={"oaiod_link": cookie[:-2] + "xx"}).status_code == 401
    assert fetch(link["url"], "POST", data=b"password=%ff", headers={"Content-Type": "text/plain"}).status_code == 400
    folder = make_link(bob, stored["oaio_id"], password="pw").json()  # a folder: polled with the cookie
    session = requests.Session()
    first = session.post(folder["url"], data={"password": "pw"}, timeout=30)
    assert first.status_code in (200, 202)
    deadline = time.monotonic() + 60
    while first.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
        first = session.get(folder["url"], timeout=30)
    assert first.status_code == 200 and set(zip_content(first.content)) == {f"work/{path}" for path in FILES}
    for _ in range(10):
        fetch(link["url"], headers={"X-Oaiod-Link-Password": "guess"})
    assert fetch(link["url"], headers={"X-Oaiod-Link-Password": "s3cret pass"}).status_code == 429


def test_bad_input(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = folder_object(bob, FILES)
    oaio_id = stored["oaio_id"]
    for body in (
        {"path": "../a.txt"},
        {"expires_in": 10},
        {"expires_in": 400 * 86400},
        {"expires_in": "7d"},
        {"password": ""},
        {"password": 5},
        {"stamp": "x"},
        {"other": 1},
    ):
        answer = make_link(bob, oaio_id, **body)
        assert answer.status_code == 400, (body, answer.text)
    assert make_link(bob, oaio_id, path="missing.txt").status_code == 404
    assert bob.delete(L + "x" * 22).status_code == 404
    assert bob.delete(L + "nope").status_code == 404


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_link_key(db_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]) -> None:
    """The key lives in the database (``hub_secrets``), kept across restarts: links stay valid; a key file an older
    hub left in its data folder is taken over once, so links that hub made stay valid too."""
    hub = hub_factory(db_url=db_url)
    bob = hub_session(hub, "bob")
    link = make_link(bob, folder_object(bob, FILES)["oaio_id"], path="a.txt").json()
    assert not (hub.settings.data_dir / "link-signing.key").exists()
    hub.stop()
    again = hub_factory(db_url=db_url, data_dir=hub.settings.data_dir, users=False)
    assert fetch(link["url"].replace(hub.url, again.url)).content == b"alpha"


def test_an_older_hubs_key_file_is_taken_over(hub_factory: Callable[..., HubServer], tmp_path: Any) -> None:
    from oaiod.hub.links import load_key

    data_dir = tmp_path / "old-hub"
    data_dir.mkdir()
    (data_dir / "link-signing.key").write_text("ab" * 32 + "\n")
    hub = hub_factory(data_dir=data_dir, users=False)
    assert hub.service is not None
    assert load_key(hub.service) == bytes.fromhex("ab" * 32)


@pytest.mark.postgres
def test_a_link_made_by_one_hub_process_opens_on_another(
    postgres_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any], hub_bucket: Any
) -> None:
    """Two hub processes on one database and bucket, each its own data folder (two machines behind a load
    balancer): a link signed by one is valid on the other, and a forged one on neither."""
    store = hub_bucket.settings()
    one = hub_factory(db_url=postgres_url, blob_store=store)
    two = hub_factory(db_url=postgres_url, blob_store=store, users=False)
    assert one.settings.data_dir != two.settings.data_dir
    bob = hub_session(one, "bob")
    link = make_link(bob, folder_object(bob, FILES)["oaio_id"], path="a.txt").json()
    assert fetch(link["url"]).content == b"alpha"
    assert fetch(link["url"].replace(one.url, two.url)).content == b"alpha"
    forged = link["url"].replace(one.url, two.url).replace("bewit=", "bewit=A")
    assert fetch(forged).status_code == 404


def test_a_wiped_creator_takes_their_links(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob, carol, alice = sessions["bob"], sessions["carol"], sessions["alice"]
    stored = folder_object(bob, FILES)
    assert bob.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "carol", "access_right": "D"}).ok
    link = make_link(carol, stored["oaio_id"], path="a.txt").json()
    assert fetch(link["url"]).status_code == 200
    assert alice.post("wipe_user/", json={"Uid": "carol"}).ok
    assert fetch(link["url"]).status_code == 404
    assert bob.get(L, params={"oaio_id": stored["oaio_id"]}).json() == []
