"""The web app over plain HTTP (no browser), on SQLite and PostgreSQL: login, pages, downloads with Range, rights,
escaping, headers, restore, sharing, supervisor pages and the API twins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.conftest import HubSession, RunningHub
from tests.hub.objects import new_object
from tests.web.helpers import make_folder, new_version, object_path, web_url

HOSTILE = "<img src=x onerror=alert(1)>.txt"


def web_login(hub: RunningHub, username: str) -> requests.Session:
    """A browser-like session logged in through the login form."""
    session = requests.Session()
    page = session.get(web_url(hub, "login"))
    assert page.status_code == 200
    answer = session.post(
        web_url(hub, "login"),
        data={"username": username, "password": hub.users[username], "csrf_token": session.cookies["csrftoken"]},
    )
    assert answer.status_code == 200 and answer.url.endswith("/web/objects"), answer.text
    return session


@pytest.fixture
def hub(hub_factory: Callable[..., RunningHub], db_url: str) -> RunningHub:
    """The hub on SQLite and on PostgreSQL (the catalog's queries differ between them)."""
    return hub_factory(db_url=db_url)


@pytest.fixture
def folder(hub: RunningHub, hub_session: Callable[..., HubSession]) -> dict[str, Any]:
    bob = hub_session(hub, "bob")
    files = {"a.txt": b"version one", "sub/b.bin": bytes(range(256)) * 40, HOSTILE: b"hostile"}
    return make_folder(bob, "Reports", files)


def test_login_pages_and_security_headers(hub: RunningHub, folder: dict[str, Any]) -> None:
    assert requests.get(web_url(hub).removesuffix("web/")).url.endswith("/web/login")  # the hub's address
    anonymous = requests.get(web_url(hub, "objects"), allow_redirects=False)
    assert anonymous.status_code == 303 and "/web/login?next=" in anonymous.headers["location"]
    session = web_login(hub, "bob")
    listing = session.get(web_url(hub, "objects"))
    assert listing.status_code == 200 and "Reports" in listing.text
    csp = listing.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert listing.headers["x-content-type-options"] == "nosniff"
    assert listing.headers["x-frame-options"] == "DENY"
    page = session.get(web_url(hub, object_path(folder["oaio_id"])))
    assert page.status_code == 200 and "a.txt" in page.text and "sub/" in page.text
    sub = session.get(web_url(hub, object_path(folder["oaio_id"])), params={"path": "sub"})
    assert "b.bin" in sub.text and "10.0 KiB" in sub.text
    out = session.post(web_url(hub, "logout"), data={"csrf_token": session.cookies["csrftoken"]})
    assert out.url.endswith("/web/login") and "You are logged out." in out.text
    assert session.get(web_url(hub, "objects"), allow_redirects=False).status_code == 303


def test_hostile_file_name_is_escaped(hub: RunningHub, folder: dict[str, Any]) -> None:
    page = web_login(hub, "bob").get(web_url(hub, object_path(folder["oaio_id"])))
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page.text


def test_download_with_range(hub: RunningHub, folder: dict[str, Any]) -> None:
    session = web_login(hub, "bob")
    url = web_url(hub, object_path(folder["oaio_id"], "download"))
    whole = session.get(url, params={"path": "sub/b.bin"})
    assert whole.status_code == 200 and whole.content == bytes(range(256)) * 40
    assert whole.headers["content-disposition"] == "attachment; filename*=UTF-8''b.bin"
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["cache-control"] == "private, no-cache"
    part = session.get(url, params={"path": "sub/b.bin"}, headers={"Range": "bytes=256-511"})
    assert part.status_code == 206 and part.content == bytes(range(256))
    assert part.headers["content-range"] == "bytes 256-511/10240"
    beyond = session.get(url, params={"path": "sub/b.bin"}, headers={"Range": "bytes=20000-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */10240"
    hostile = session.get(url, params={"path": HOSTILE})
    assert hostile.content == b"hostile"
    assert "filename*=UTF-8''%3Cimg%20src%3Dx" in hostile.headers["content-disposition"]


def test_other_user_is_refused(hub: RunningHub, folder: dict[str, Any], hub_session: Callable[..., HubSession]) -> None:
    carol = web_login(hub, "carol")
    page = carol.get(web_url(hub, object_path(folder["oaio_id"])))
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "Reports" not in carol.get(web_url(hub, "objects")).text
    download = carol.get(web_url(hub, object_path(folder["oaio_id"], "download")), params={"path": "a.txt"})
    assert download.status_code == 404 and b"version one" not in download.content
    api = hub_session(hub, "carol").get(f"hub/versions/{folder['oaio_id']}")
    assert api.status_code == 404 and api.json()["error"] == "not_found"


def test_form_without_csrf_token_is_refused(hub: RunningHub, folder: dict[str, Any]) -> None:
    session = web_login(hub, "bob")
    url = web_url(hub, object_path(folder["oaio_id"], "restore"))
    answer = session.post(url, data={"stamp": folder["client_stamp"]})
    assert answer.status_code == 403 and "CSRF" in answer.text


def test_restore_a_file_version(
    hub: RunningHub, folder: dict[str, Any], hub_session: Callable[..., HubSession]
) -> None:
    bob_api = hub_session(hub, "bob")
    stored = new_version(bob_api, folder, {"a.txt": b"version two", "sub/b.bin": b"new"})
    session = web_login(hub, "bob")
    file_page = session.get(web_url(hub, object_path(folder["oaio_id"], "file")), params={"path": "a.txt"})
    assert file_page.status_code == 200 and file_page.text.count("Download</a>") == 2
    restored = session.post(
        web_url(hub, object_path(folder["oaio_id"], "restore")),
        data={"stamp": folder["client_stamp"], "path": "a.txt", "csrf_token": session.cookies["csrftoken"]},
    )
    assert restored.status_code == 200 and "Restored a.txt" in restored.text
    versions = bob_api.get(f"hub/versions/{folder['oaio_id']}").json()
    assert len(versions) == 3 and versions[0]["stamp"] > stored["client_stamp"]
    newest = versions[0]["values"]
    assert sorted(newest["_file_paths"]) == ["a.txt", "sub/b.bin"]
    assert newest["_oaiod"]["stamp"] == versions[0]["stamp"]
    url = web_url(hub, object_path(folder["oaio_id"], "download"))
    assert session.get(url, params={"path": "a.txt"}).content == b"version one"
    assert session.get(url, params={"path": "sub/b.bin"}).content == b"new"


def test_sharing_follows_subscribe_rules(
    hub: RunningHub, folder: dict[str, Any], hub_session: Callable[..., HubSession]
) -> None:
    bob = web_login(hub, "bob")
    url = web_url(hub, object_path(folder["oaio_id"], "sharing"))
    page = bob.get(url)
    assert page.status_code == 200 and "owner" in page.text and "Share with a user" in page.text
    granted = bob.post(url, data={"username": "carol", "right": "U", "csrf_token": bob.cookies["csrftoken"]})
    assert granted.status_code == 200 and "carol is now writer" in granted.text
    carol = web_login(hub, "carol")
    assert "Reports" in carol.get(web_url(hub, "objects")).text
    refused = carol.post(url, data={"username": "alice", "right": "r", "csrf_token": carol.cookies["csrftoken"]})
    assert refused.status_code == 403 and "granting rights" in refused.text
    never_c = bob.post(url, data={"username": "alice", "right": "C", "csrf_token": bob.cookies["csrftoken"]})
    assert never_c.status_code == 403
    api = hub_session(hub, "carol").post(
        "subscribe/", json={"oaio_id": folder["oaio_id"], "username": "alice", "access_right": "r"}
    )
    assert api.status_code == 403 and api.json()["error"] == "forbidden"
    removed = bob.post(url, data={"username": "carol", "right": "x", "csrf_token": bob.cookies["csrftoken"]})
    assert "carol no longer has access" in removed.text
    assert carol.get(web_url(hub, object_path(folder["oaio_id"]))).status_code == 404


def test_supervisor_pages(hub: RunningHub, folder: dict[str, Any], hub_session: Callable[..., HubSession]) -> None:
    assert web_login(hub, "bob").get(web_url(hub, "admin/users")).status_code == 403
    alice = web_login(hub, "alice")
    users = alice.get(web_url(hub, "admin/users"))
    assert users.status_code == 200 and "bob" in users.text
    token = alice.cookies["csrftoken"]
    added = alice.post(
        web_url(hub, "admin/users"), data={"username": "dave", "password": "long enough", "csrf_token": token}
    )
    assert "Added dave" in added.text
    hub.users["dave"] = "long enough"
    dave = web_login(hub, "dave")
    alice.post(web_url(hub, "admin/users/dave/disable"), data={"csrf_token": token})
    assert dave.get(web_url(hub, "objects"), allow_redirects=False).status_code == 303  # logged out
    assert alice.get(web_url(hub, "admin/health")).status_code == 200
    assert alice.get(web_url(hub, "admin/storage")).status_code == 200
    api = hub_session(hub, "alice")
    rows = {row["username"]: row for row in api.get("hub/users/").json()}
    assert rows["dave"]["can_login"] is False and rows["bob"]["storage_used"] == len(b"version one") + 10240 + 7
    assert hub_session(hub, "bob").get("hub/users/").status_code == 403


def test_api_twins(hub: RunningHub, folder: dict[str, Any], hub_session: Callable[..., HubSession]) -> None:
    bob = hub_session(hub, "bob")
    listed = bob.get("hub/objects/").json()["objects"]
    assert [(o["name"], o["owner"], o["right"], o["files"]) for o in listed] == [("Reports", "bob", "C", 3)]
    tree = bob.get(f"hub/tree/{folder['oaio_id']}", params={"path": "sub"}).json()
    assert [(e["name"], e["size"]) for e in tree["entries"]] == [("b.bin", 10240)]
    stored = new_version(bob, folder, {"a.txt": b"two"})
    assert len(bob.get(f"hub/file-versions/{folder['oaio_id']}", params={"path": "a.txt"}).json()) == 2
    answer = bob.post("hub/restore/", json={"oaio_id": folder["oaio_id"], "stamp": folder["client_stamp"]})
    assert answer.status_code == 200 and answer.json()["stamp"] > stored["client_stamp"]
    top = bob.get(f"hub/tree/{folder['oaio_id']}").json()
    assert [e["name"] for e in top["entries"]] == ["sub", HOSTILE, "a.txt"]
    carol = hub_session(hub, "carol")
    body = {"oaio_id": folder["oaio_id"], "stamp": folder["client_stamp"]}
    assert carol.post("hub/restore/", json=body).status_code == 404  # not subscribed: learns nothing
    bob.post("subscribe/", json={"oaio_id": folder["oaio_id"], "username": "carol", "access_right": "r"})
    refused = carol.post("hub/restore/", json=body)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"  # read only


def test_reader_may_not_restore(
    hub: RunningHub, folder: dict[str, Any], hub_session: Callable[..., HubSession]
) -> None:
    bob_api = hub_session(hub, "bob")
    new_version(bob_api, folder, {"a.txt": b"two"})
    bob_api.post("subscribe/", json={"oaio_id": folder["oaio_id"], "username": "carol", "access_right": "r"})
    carol = web_login(hub, "carol")
    page = carol.get(web_url(hub, object_path(folder["oaio_id"])))
    assert page.status_code == 200 and ">Restore<" not in page.text
    url = web_url(hub, object_path(folder["oaio_id"], "restore"))
    refused = carol.post(url, data={"stamp": folder["client_stamp"], "csrf_token": carol.cookies["csrftoken"]})
    assert refused.status_code == 403 and "Not allowed" in refused.text
    assert len(bob_api.get(f"hub/versions/{folder['oaio_id']}").json()) == 2
    bob = web_login(hub, "bob")
    bob.post(url, data={"stamp": folder["client_stamp"], "csrf_token": bob.cookies["csrftoken"]})
    newest = bob_api.get(f"hub/versions/{folder['oaio_id']}").json()[0]
    assert (newest["username"], newest["device_id"], newest["app_id"]) == ("bob", "web", "web")
    assert sorted(newest["values"]["_file_paths"]) == sorted(folder["client_values"]["_file_paths"])


def test_data_object_values_are_text(hub: RunningHub, hub_session: Callable[..., HubSession]) -> None:
    bob = hub_session(hub, "bob")
    obj = new_object("bob", "settings", theme="<script>alert(1)</script>")
    stored = bob.post("register/", json=obj).json()
    page = web_login(hub, "bob").get(web_url(hub, object_path(stored["oaio_id"])))
    assert page.status_code == 200 and "data object" in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_cookies_are_secure_behind_an_https_proxy(hub_factory: Callable[..., RunningHub]) -> None:
    hub = hub_factory(trusted_proxies=("127.0.0.1",))
    form = requests.get(web_url(hub, "login"), headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert "secure" in form.headers["set-cookie"].lower()
    token = form.cookies["csrftoken"]  # a Secure cookie: sent by hand, this test speaks plain HTTP to the hub
    answer = requests.post(
        web_url(hub, "login"),
        headers={"X-Forwarded-Proto": "https", "Cookie": f"csrftoken={token}"},
        data={"username": "bob", "password": hub.users["bob"], "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )
    cookies = answer.headers["set-cookie"].lower()
    assert answer.status_code == 303 and "sessionid=" in cookies and "secure" in cookies and "httponly" in cookies
