"""Part A over real HTTP: transport (CSRF, session, context headers), every route, supervisor impersonation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import requests

from oaiod.hub.server import HubServer
from oaiod.model import OBJECT_KEYS, context_encode, now_stamp
from tests.hub.objects import new_object, next_version

pytestmark = pytest.mark.integration

POST_ROUTES = ("login/", "logout/", "register/", "upload/", "delete/", "subscribe/", "wipe_user/")


def test_get_on_every_post_route_answers_2xx_and_hands_out_csrf(hub: HubServer) -> None:
    for route in POST_ROUTES:
        answer = requests.get(hub.url + route, timeout=10)
        assert answer.ok, route
        assert answer.json()
        assert answer.cookies.get("csrftoken")
        assert answer.headers["X-Oaiod-Hub"]


def test_csrf_missing_or_wrong_token_is_refused(hub: HubServer) -> None:
    session = requests.Session()
    session.headers.update(context_encode("bob", "dev1", "app"))
    credentials = {"username": "bob", "password": hub.users["bob"]}  # type: ignore[attr-defined]
    answer = session.post(hub.url + "login/", json=credentials, timeout=10)
    assert answer.status_code == 403 and answer.json()["error"] == "csrf"
    token = session.get(hub.url + "login/", timeout=10).cookies["csrftoken"]
    answer = session.post(hub.url + "login/", json=credentials, headers={"X-CSRFToken": token + "x"}, timeout=10)
    assert answer.status_code == 403 and answer.json()["reason"]
    answer = session.post(hub.url + "login/", json=credentials, headers={"X-CSRFToken": token}, timeout=10)
    assert answer.status_code == 200, answer.text
    # a logged-in session still needs the token on every POST
    answer = session.post(hub.url + "register/", json=new_object("bob"), timeout=10)
    assert answer.status_code == 403 and answer.json()["error"] == "csrf"


def test_every_route_needs_a_session(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    anon = hub_session(hub, "bob", login=False)
    for method, route in [
        ("GET", "current_stamp/"),
        ("GET", "csh_args/Local"),
        ("GET", "oaio_stampz/"),
        ("GET", "user_subz/anything"),
        ("GET", "hub/features/"),
        ("GET", "hub/deleted/?since=" + now_stamp()),
        ("GET", "hub/changes/?timeout=0&since=" + now_stamp()),
        ("POST", "register/"),
        ("POST", "upload/"),
        ("POST", "delete/"),
        ("POST", "subscribe/"),
        ("POST", "wipe_user/"),
    ]:
        answer = anon.request(method, route, json={})
        assert answer.status_code == 401, (route, answer.text)
        assert answer.json()["error"] == "not_authenticated"


def test_login_logout(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    bob = hub_session(hub, "bob", login=False)
    wrong = bob.post("login/", json={"username": "bob", "password": "nope"})
    assert wrong.status_code == 401 and "password" in wrong.json()["reason"]
    assert bob.login(hub.users["bob"]).json() == {"username": "bob", "is_supervisor": False}  # type: ignore[attr-defined]
    assert bob.get("current_stamp/").ok
    assert bob.post("logout/").ok
    assert bob.get("current_stamp/").status_code == 401


def test_failed_logins_are_throttled(hub_factory: Callable[..., Any], hub_session: Callable[..., Any]) -> None:
    hub = hub_factory(login_max_failures=3)
    carol = hub_session(hub, "carol", login=False)
    for _ in range(3):
        assert carol.post("login/", json={"username": "carol", "password": "bad"}).status_code == 401
    answer = carol.post("login/", json={"username": "carol", "password": hub.users["carol"]})
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.json()["error"] == "rate_limited"


def test_current_stamp_and_csh_args(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    assert hub.service is not None
    hub.service.set_storage("Local", {"root_folder": "/srv/oaio"})
    bob = hub_session(hub, "bob")
    stamp = bob.get("current_stamp/").json()["current_stamp"]
    assert len(stamp) == 20 and stamp.isdigit()
    assert bob.get("csh_args/Local").json() == {"root_folder": "/srv/oaio"}
    missing = bob.get("csh_args/Nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_register_upload_list_delete(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice = hub_session(hub, "alice")
    posted = new_object("alice", text="one", extra={"nested": [1, 2, None]})
    posted["username"] = "mallory"  # the hub records the caller, never the body's claim
    stored = alice.post("register/", json=posted)
    assert stored.status_code == 200, stored.text
    stored = stored.json()
    assert tuple(stored) == OBJECT_KEYS
    assert stored["username"] == "alice" and stored["csh_access_right"] == "C"
    assert stored["client_values"] == posted["client_values"]
    again = alice.post("register/", json=posted)
    assert again.status_code == 409 and again.json()["object"]["oaio_id"] == posted["oaio_id"]

    update = next_version(stored, text="two")
    uploaded = alice.post("upload/", json=update).json()
    assert uploaded["client_values"]["text"] == "two" and uploaded["server_values"]["text"] == "one"
    assert uploaded["server_stamp"] == stored["client_stamp"]

    other = alice.post("register/", json=new_object("alice", name="second"))
    listing = alice.get("oaio_stampz/").json()
    assert [o["oaio_id"] for o in listing] == [posted["oaio_id"], other.json()["oaio_id"]]
    assert all(tuple(o) == OBJECT_KEYS for o in listing)

    assert alice.post("delete/", json=uploaded).ok
    assert [o["oaio_id"] for o in alice.get("oaio_stampz/").json()] == [other.json()["oaio_id"]]
    assert alice.post("delete/", json={"oaio_id": posted["oaio_id"]}).status_code == 404


def test_subscribe_and_user_subz(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    stored = alice.post("register/", json=new_object("alice")).json()
    oaio_id = stored["oaio_id"]
    pid = alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "r"}).json()["Pid"]
    assert isinstance(pid, int) and pid > 0
    again = alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "U"}).json()
    assert again["Pid"] == pid
    seen = bob.get("oaio_stampz/").json()
    assert [(o["oaio_id"], o["csh_access_right"]) for o in seen] == [(oaio_id, "U")]
    rights = bob.get("user_subz/" + quote(oaio_id, safe="")).json()
    assert rights == [
        {"username": "alice", "access_right": "C"},
        {"username": "bob", "access_right": "U"},
        {"username": "carol", "access_right": "x"},
    ]
    unknown = bob.get("user_subz/_not__existing__oaio_id_").json()
    assert {r["access_right"] for r in unknown} == {"x"} and len(unknown) == 3
    gone = alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "bob", "access_right": "x"})
    assert gone.json() == {"Pid": pid}
    assert bob.get("oaio_stampz/").json() == []


def test_supervisor_impersonation(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    bob = hub_session(hub, "bob")
    stored = bob.post("register/", json=new_object("bob")).json()
    alice = hub_session(hub, "alice")
    assert alice.get("oaio_stampz/").json() == []
    alice.headers.update(context_encode("bob", "dev1", "testapp"))
    assert [o["oaio_id"] for o in alice.get("oaio_stampz/").json()] == [stored["oaio_id"]]
    # carol is no supervisor: her X-OAIO-user claim is ignored, she stays carol
    carol = hub_session(hub, "carol")
    carol.headers.update(context_encode("bob", "dev1", "testapp"))
    assert carol.get("oaio_stampz/").json() == []
    alice.headers.update(context_encode("nobody", "dev1", "testapp"))
    assert alice.get("oaio_stampz/").status_code == 404


def test_supervisor_subscribing_unknown_user_creates_it(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    oaio_id = alice.post("register/", json=new_object("alice")).json()["oaio_id"]
    bobs = bob.post("register/", json=new_object("bob")).json()["oaio_id"]
    refused = bob.post("subscribe/", json={"oaio_id": bobs, "username": "dave", "access_right": "r"})
    assert refused.status_code == 404 and "dave" in refused.json()["reason"]
    assert alice.post("subscribe/", json={"oaio_id": oaio_id, "username": "dave", "access_right": "r"}).ok
    assert hub.service is not None
    dave = [u for u in hub.service.list_users() if u["username"] == "dave"]
    assert dave and not dave[0]["can_login"]


def test_wipe_user(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice, bob, carol = (hub_session(hub, name) for name in ("alice", "bob", "carol"))
    shared = alice.post("register/", json=new_object("alice", name="shared")).json()["oaio_id"]
    alice.post("subscribe/", json={"oaio_id": shared, "username": "bob", "access_right": "U"})
    own = bob.post("register/", json=new_object("bob", name="own")).json()["oaio_id"]
    assert carol.post("wipe_user/", json={"Uid": "bob"}).status_code == 403
    assert bob.post("wipe_user/", json={"Uid": "bob"}).ok  # a user may wipe themself
    assert bob.get("current_stamp/").status_code == 401
    names = [r["username"] for r in alice.get("user_subz/" + quote(shared, safe="")).json()]
    assert names == ["alice", "carol"]
    assert hub.service is not None
    with hub.service.sessions() as db:
        from oaiod.hub.db import LogEntry, Object

        assert db.get(Object, own) is None  # nobody else subscribed: gone with its user
        assert db.get(Object, shared) is not None
        assert not [e for e in db.query(LogEntry).all() if e.username == "bob"]
    assert alice.post("wipe_user/", json={"Uid": "carol"}).ok  # a supervisor may wipe anyone
    assert alice.post("wipe_user/", json={"Uid": "carol"}).status_code == 404


def test_a_failure_inside_the_hub_answers_500_json_with_the_hub_header(
    hub_factory: Callable[..., Any], hub_session: Callable[..., Any]
) -> None:
    """A real fault, not a mock: the blob table is renamed away under the running hub (SQLite), so the query fails."""
    import sqlalchemy as sa

    hub = hub_factory()
    alice = hub_session(hub, "alice")
    with hub.service.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE blobs RENAME TO blobs_gone"))
    try:
        answer = alice.get("hub/blobs/metadata/scratch/x")
        assert answer.status_code == 500
        assert answer.json()["error"] == "internal"
        assert answer.headers["X-Oaiod-Hub"]
    finally:
        with hub.service.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE blobs_gone RENAME TO blobs"))
    assert alice.get("hub/blobs/metadata/scratch/x").status_code == 404
