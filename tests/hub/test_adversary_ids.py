"""Adversary: users of one hub claim ids and objects that are not theirs (issue 9 §1), on SQLite and PostgreSQL.

Ownership comes from the hub's records: an id names its registering user (``register/`` of another user's id is
403), an id under which another user stored files before registering it is theirs (409), and the hub attests the
creator and its own registration stamp (``hub/origin/``) instead of anything parsed from the id.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from oaiod.hub.server import HubServer
from oaiod.model import OaiObject, defuse, now_stamp
from tests.hub.blobhelpers import download, put_blob
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration

B = "hub/blobs/"
OLD_STAMP = "20230101000000000000"


def _forged(user_in_id: str, **values: Any) -> dict[str, Any]:
    """A root-looking object dict under an id that names ``user_in_id``, with an old stamp."""
    oaio_id = defuse(f"oaiod://{user_in_id}@evil/oaiod-root/{OLD_STAMP}")
    values = {"_name": "oaiod-root", "_oaiod": {"v": 1, "kind": "root"}, **values}
    return OaiObject(oaio_id, now_stamp(), "", values, {}, "Local", "bob", "evil", "oaiod", "C").to_dict()


def test_an_id_naming_another_user_is_refused(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., dict[str, Any]]
) -> None:
    bob = sessions["bob"]
    before = db_snapshot(hub)
    for posted in (_forged("alice"), new_object("alice"), {**new_object("bob"), "oaio_id": "no-user-part"}):
        answer = bob.post("register/", json=posted)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "forbidden" and "object" not in answer.json()
    assert db_snapshot(hub) == before  # a refused request changes nothing
    # nor can bob then hand such an object to alice: it does not exist
    grant = bob.post(
        "subscribe/", json={"oaio_id": _forged("alice")["oaio_id"], "username": "alice", "access_right": "D"}
    )
    assert grant.status_code == 404
    assert sessions["alice"].get("oaio_stampz/").json() == []


def test_ids_minted_by_a_victim_stay_theirs(hub: HubServer, sessions: dict[str, Any]) -> None:
    """alice uploads the files of an object before registering it; bob can neither claim the id nor read them."""
    alice, bob = sessions["alice"], sessions["bob"]
    obj = new_object("alice")
    name = f"{obj['oaio_id']}/{obj['client_stamp']}/diary.txt"
    put_blob(alice, name, b"alice's diary")
    assert bob.post("register/", json={**obj, "username": "bob"}).status_code == 403
    assert bob.get(B + "metadata/" + quote(name)).status_code == 404
    assert alice.post("register/", json=obj).status_code == 200  # alice's own register still works
    assert download(alice, name).content == b"alice's diary"
    assert bob.get(B + "metadata/" + quote(name)).status_code == 404


def test_an_at_sign_in_a_user_name_does_not_open_a_minted_id(
    hub: HubServer, hub_session: Callable[..., Any], sessions: dict[str, Any]
) -> None:
    """``bob`` and ``bob@evil`` both match ``oaiod⫻bob﹫evil﹫dev…``: whoever stored files there first keeps it."""
    assert hub.service is not None
    password = secrets.token_urlsafe(12)
    hub.service.add_user("bob@evil", password)
    hub.users["bob@evil"] = password  # type: ignore[attr-defined]
    victim, bob = hub_session(hub, "bob@evil", device="dev"), sessions["bob"]
    obj = new_object("bob@evil")
    assert obj["oaio_id"].startswith(defuse("testapp://bob@evil@"))
    name = f"{obj['oaio_id']}/{obj['client_stamp']}/secret.txt"
    put_blob(victim, name, b"bob@evil's secret")
    claimed = bob.post("register/", json={**obj, "username": "bob"})
    assert claimed.status_code == 409, claimed.text
    assert bob.get(B + "metadata/" + quote(name)).status_code == 404
    assert victim.post("register/", json=obj).status_code == 200


def test_the_hub_attests_creator_and_registration_stamp(hub: HubServer, sessions: dict[str, Any]) -> None:
    alice, bob, carol = sessions["alice"], sessions["bob"], sessions["carol"]
    posted = _forged("bob")  # bob's own id, with a stamp from 2023
    before = now_stamp()
    stored = bob.post("register/", json=posted)
    assert stored.status_code == 200, stored.text
    oaio_id = posted["oaio_id"]
    assert bob.post("subscribe/", json={"oaio_id": oaio_id, "username": "alice", "access_right": "D"}).ok
    origin = alice.get("hub/origin/" + quote(oaio_id, safe=""))
    assert origin.status_code == 200
    assert origin.json()["creator"] == "bob" and origin.json()["oaio_id"] == oaio_id
    assert origin.json()["registered"] >= before > OLD_STAMP  # the hub's clock, not the id's stamp
    # only the creator holds C, in every listing: alice is told D
    (listed,) = alice.get("oaio_stampz/").json()
    assert listed["csh_access_right"] == "D"
    rights = {r["username"]: r["access_right"] for r in alice.get("user_subz/" + quote(oaio_id, safe="")).json()}
    assert rights["bob"] == "C" and rights["alice"] == "D"
    assert carol.get("hub/origin/" + quote(oaio_id, safe="")).status_code == 404  # a non-subscriber learns nothing
    assert "origin" in alice.get("hub/features/").json()["features"]


def test_a_supervisor_registers_for_the_user_it_acts_for(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    """alice is a supervisor: acting for bob (``X-OAIO-user: bob``) she may register bob's ids, and bob holds C."""
    acting = hub_session(hub, "alice")
    acting.headers["X-OAIO-user"] = repr(b"bob")
    obj = new_object("bob")
    answer = acting.post("register/", json=obj)
    assert answer.status_code == 200, answer.text
    assert answer.json()["csh_access_right"] == "C"
    assert acting.post("register/", json=new_object("alice")).status_code == 403  # acting for bob, not herself
