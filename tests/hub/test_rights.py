"""Access rights on every route: who may upload, delete, grant; a non-subscriber learns nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from oaiod.hub.server import HubServer
from tests.hub.objects import new_object, next_version

pytestmark = pytest.mark.integration


@pytest.fixture
def shared(hub: HubServer, hub_session: Callable[..., Any]) -> dict[str, Any]:
    """alice's object, bob subscribed read-only; sessions for all three users."""
    alice, bob, carol = (hub_session(hub, name) for name in ("alice", "bob", "carol"))
    stored = alice.post("register/", json=new_object("alice", text="v1")).json()
    assert alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "r"}).ok
    return {"alice": alice, "bob": bob, "carol": carol, "object": stored}


def _sub(session: Any, oaio_id: str, username: str, right: str) -> Any:
    return session.post("subscribe/", json={"oaio_id": oaio_id, "username": username, "access_right": right})


def test_read_only_subscriber_cannot_change_anything(shared: dict[str, Any]) -> None:
    bob, stored = shared["bob"], shared["object"]
    oaio_id = stored["oaio_id"]
    assert bob.post("upload/", json=next_version(stored, text="bob")).status_code == 403
    assert bob.post("delete/", json=stored).status_code == 403
    assert _sub(bob, oaio_id, "carol", "r").status_code == 403
    assert _sub(bob, oaio_id, "alice", "x").status_code == 403
    listed = bob.get("oaio_stampz/").json()
    assert [(o["client_values"]["text"], o["csh_access_right"]) for o in listed] == [("v1", "r")]


def test_non_subscriber_learns_nothing(shared: dict[str, Any]) -> None:
    carol, stored = shared["carol"], shared["object"]
    oaio_id = stored["oaio_id"]
    unknown = {**stored, "oaio_id": "x" + oaio_id}
    for body, route in [(next_version(stored), "upload/"), (stored, "delete/")]:
        refused, missing = carol.post(route, json=body), carol.post(route, json={**body, "oaio_id": unknown["oaio_id"]})
        assert refused.status_code == missing.status_code == 404
        assert "text" not in refused.text
    assert _sub(carol, oaio_id, "carol", "r").status_code == 404
    assert carol.get("oaio_stampz/").json() == []
    rights = carol.get("user_subz/" + quote(oaio_id, safe="")).json()
    assert {r["access_right"] for r in rights} == {"x"}
    assert carol.get("hub/versions/" + quote(oaio_id, safe="")).status_code == 404
    taken = carol.post("register/", json=stored)  # an id of alice's is never carol's, whether it exists or not
    assert taken.status_code == 403 and "object" not in taken.json()


def test_granting_rules(shared: dict[str, Any]) -> None:
    alice, bob, stored = shared["alice"], shared["bob"], shared["object"]
    oaio_id = stored["oaio_id"]
    assert _sub(alice, oaio_id, "bob", "C").status_code == 403  # nobody is granted C
    assert _sub(alice, oaio_id, "bob", "D").ok
    assert _sub(bob, oaio_id, "carol", "D").ok  # D may grant up to D
    assert _sub(bob, oaio_id, "carol", "C").status_code == 403
    assert _sub(bob, oaio_id, "alice", "r").status_code == 403  # the creator's right never changes
    assert _sub(bob, oaio_id, "alice", "x").status_code == 403
    assert _sub(alice, oaio_id, "alice", "x").status_code == 403  # not even by the creator
    assert _sub(bob, oaio_id, "carol", "x").ok  # D may remove others
    assert _sub(alice, oaio_id, "carol", "x").json() == {"Pid": 0}  # nothing to remove


def test_update_and_delete_rights(shared: dict[str, Any]) -> None:
    alice, bob, stored = shared["alice"], shared["bob"], shared["object"]
    oaio_id = stored["oaio_id"]
    assert _sub(alice, oaio_id, "bob", "U").ok
    updated = bob.post("upload/", json=next_version(stored, text="by bob"))
    assert updated.ok and updated.json()["username"] == "bob" and updated.json()["csh_access_right"] == "U"
    assert bob.post("delete/", json=stored).status_code == 403
    assert _sub(bob, oaio_id, "bob", "x").ok  # anyone may leave
    assert _sub(alice, oaio_id, "bob", "D").ok
    assert bob.post("delete/", json={"oaio_id": oaio_id}).ok
    assert alice.get("oaio_stampz/").json() == []
