"""Part B over real HTTP: since deltas with the cursor, deletions, the 409 rule, the change feed, versions."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from oaiod.hub.db import stamp_add
from oaiod.hub.server import HubServer
from oaiod.model import OBJECT_KEYS, now_stamp
from tests.hub.objects import new_object, next_version

pytestmark = pytest.mark.integration


def _stampz(session: Any, since: str | None = None) -> tuple[list[str], str, int]:
    answer = session.get("oaio_stampz/", params={"since": since} if since else None)
    assert answer.ok, answer.text
    ids = [o["oaio_id"] for o in answer.json()]
    return ids, answer.headers["X-Oaiod-Sync-Stamp"], int(answer.headers["X-Oaiod-Deleted-Count"])


def test_features(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    answer = hub_session(hub, "bob").get("hub/features/").json()
    assert {"since", "conflict409", "changes", "versions"} <= set(answer["features"])
    assert answer["version"]


def test_since_deltas_cursor_and_deletions(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    first = alice.post("register/", json=new_object("alice", name="one")).json()
    second = alice.post("register/", json=new_object("alice", name="two")).json()
    ids, cursor, deleted = _stampz(alice)
    assert ids == [first["oaio_id"], second["oaio_id"]] and deleted == 0
    assert _stampz(alice, cursor) == ([], cursor, 0)  # nothing changed: one request, empty answer

    alice.post("upload/", json=next_version(first, text="changed"))
    ids, cursor2, _ = _stampz(alice, cursor)
    assert ids == [first["oaio_id"]] and cursor2 > cursor

    # a new subscription counts as a change for the subscriber, its removal as a deletion
    _ids, bob_cursor, _ = _stampz(bob)
    alice.post("subscribe/", json={"oaio_id": second["oaio_id"], "username": "bob", "access_right": "r"})
    ids, bob_cursor2, _ = _stampz(bob, bob_cursor)
    assert ids == [second["oaio_id"]]
    alice.post("subscribe/", json={"oaio_id": second["oaio_id"], "username": "bob", "access_right": "x"})
    ids, bob_cursor3, deleted = _stampz(bob, bob_cursor2)
    assert ids == [] and deleted == 1
    gone = bob.get("hub/deleted/", params={"since": bob_cursor2}).json()
    assert gone["deleted"] == [second["oaio_id"]] and gone["sync_stamp"] == bob_cursor3

    alice.post("delete/", json={"oaio_id": first["oaio_id"]})
    ids, _cursor3, deleted = _stampz(alice, cursor2)
    assert ids == [] and deleted == 1
    assert alice.get("hub/deleted/", params={"since": cursor2}).json()["deleted"] == [first["oaio_id"]]


def test_since_older_than_tombstones_answers_410(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    bob = hub_session(hub, "bob")
    ancient = stamp_add(now_stamp(), -91 * 86400)
    for route in ("hub/deleted/", "oaio_stampz/"):
        answer = bob.get(route, params={"since": ancient})
        assert answer.status_code == 410 and answer.json()["error"] == "gone"


def test_upload_conflict_409_keeps_the_stored_version(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    stored = alice.post("register/", json=new_object("alice", text="base")).json()
    alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "U"})
    alices = next_version(stored, text="alice")
    bobs = next_version(stored, text="bob")
    assert alice.post("upload/", json=alices).ok
    refused = bob.post("upload/", json=bobs)
    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "conflict" and body["reason"]
    assert tuple(body["object"]) == OBJECT_KEYS
    assert body["object"]["client_values"]["text"] == "alice" and body["object"]["csh_access_right"] == "U"
    not_newer = {**next_version(body["object"], text="old"), "client_stamp": body["object"]["client_stamp"]}
    assert bob.post("upload/", json=not_newer).status_code == 409
    assert bob.post("upload/", json=next_version(body["object"], text="merged")).ok


def test_change_feed_wakes_on_a_commit(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    stored = alice.post("register/", json=new_object("alice")).json()
    _ids, cursor, _ = _stampz(bob)
    idle = bob.get("hub/changes/", params={"since": cursor, "timeout": "0.2"}).json()
    assert idle == {"changed": False, "sync_stamp": cursor}

    answers: list[dict[str, Any]] = []
    waiter = threading.Thread(
        target=lambda: answers.append(bob.get("hub/changes/", params={"since": cursor, "timeout": 50}).json())
    )
    waiter.start()
    # a change bob cannot see does not wake him for good; his new subscription does
    alice.post("upload/", json=next_version(stored, text="unseen"))
    alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "r"})
    waiter.join(timeout=40)
    assert not waiter.is_alive(), "the change feed did not wake within the poll"
    assert answers[0]["changed"] is True and answers[0]["sync_stamp"] > cursor


def test_change_feed_is_released_when_the_hub_stops(hub_factory: Callable[..., Any], hub_session: Callable[..., Any]):
    hub = hub_factory()
    bob = hub_session(hub, "bob")
    answers: list[Any] = []
    waiter = threading.Thread(
        target=lambda: answers.append(bob.get("hub/changes/", params={"since": now_stamp(), "timeout": 60}))
    )
    waiter.start()
    threading.Event().wait(0.3)
    hub.stop()
    waiter.join(timeout=30)
    assert not waiter.is_alive()


def test_versions_newest_first(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    alice = hub_session(hub, "alice")
    stored = alice.post("register/", json=new_object("alice", text="v1")).json()
    second = alice.post("upload/", json=next_version(stored, text="v2")).json()
    alice.post("upload/", json=next_version(second, text="v3"))
    versions = alice.get("hub/versions/" + quote(stored["oaio_id"], safe="")).json()
    assert [v["values"]["text"] for v in versions] == ["v3", "v2", "v1"]
    assert set(versions[0]) == {"stamp", "values", "csh_id", "username", "device_id", "app_id", "created"}
    assert versions[2]["stamp"] == stored["client_stamp"] and versions[0]["device_id"] == "dev1"
    # one version by its stamp (a device asking whether its commit landed after the answer was lost)
    path = "hub/versions/" + quote(stored["oaio_id"], safe="")
    only = alice.get(path, params={"stamp": second["client_stamp"]}).json()
    assert [v["values"]["text"] for v in only] == ["v2"]
    assert alice.get(path, params={"stamp": "20230101000000000000"}).json() == []
    bad = alice.get(path, params={"stamp": "not-a-stamp"})
    assert bad.status_code == 400 and "stamp" in bad.json()["reason"]


# -- who a commit wakes, and the per-user cap on waiting polls ---------------------------------------------------
#
# Polls are sent on connections of their own (http.client), so a test can park several, read an answer later or
# hang up without reading. That a poll is parked is shown by the cap itself: once the user's polls fill it, a probe
# answers 429. The probe asks from the future, so it never queries and never waits (it cannot take a slot from a
# poll about to park).


def _park(hub: HubServer, session: Any, since: str, timeout: float = 50) -> http.client.HTTPConnection:
    """Send a ``hub/changes/`` poll as ``session``'s user on a connection of its own; ``getresponse()`` reads it."""
    conn = http.client.HTTPConnection(hub.host, timeout=60)
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in session.cookies)
    query = urlencode({"since": since, "timeout": f"{timeout:g}"})
    conn.request("GET", f"/api/hub/changes/?{query}", headers={**session.headers, "Cookie": cookies})
    return conn


def _probe(session: Any) -> Any:
    return session.get("hub/changes/", params={"since": stamp_add(now_stamp(), 3600), "timeout": "0"})


def _until_probe_answers(session: Any, status: int) -> Any:
    """Probe until it answers ``status`` (429: the user's polls fill the cap; 200: a slot is free); that answer."""
    deadline = time.monotonic() + 20
    while (answer := _probe(session)).status_code != status:
        assert time.monotonic() < deadline, f"the probe kept answering {answer.status_code}, not {status}"
        time.sleep(0.01)
    return answer


def _answer(conn: http.client.HTTPConnection) -> dict[str, Any]:
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200, body
    return json.loads(body)


@pytest.fixture
def capped_hub(db_url: str, hub_factory: Callable[..., HubServer]) -> HubServer:
    """A hub on every database where a user may park one poll: a second answers 429 until the first ends."""
    return hub_factory(db_url=db_url, feed_waiters_per_user=1)


def test_a_commit_names_only_the_users_it_concerns(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    assert hub.service is not None and hub.service.on_commit is not None
    named: list[set[str]] = []
    forward = hub.service.on_commit

    def spy(stamp: str, usernames: frozenset[str]) -> None:
        named.append(set(usernames))
        forward(stamp, usernames)

    hub.service.on_commit = spy
    alice, bob, carol = (hub_session(hub, name) for name in ("alice", "bob", "carol"))

    def woken(answer: Any) -> set[str]:
        """The users the commit of a request named (it is called before the request answers)."""
        assert answer.ok, answer.text
        return named.pop()

    def share(username: str, right: str) -> Any:
        body = {"oaio_id": stored["oaio_id"], "username": username, "access_right": right}
        return alice.post("subscribe/", json=body)

    stored = alice.post("register/", json=new_object("alice", name="shared")).json()
    assert named.pop() == {"alice"}
    stored = alice.post("upload/", json=next_version(stored, text="v2")).json()
    assert named.pop() == {"alice"}
    assert woken(share("bob", "r")) == {"bob"}
    assert woken(share("bob", "U")) == {"bob"}
    assert woken(share("carol", "r")) == {"carol"}
    assert woken(bob.post("upload/", json=next_version(stored, text="bob's"))) == {"alice", "bob", "carol"}
    assert woken(share("bob", "x")) == {"bob"}
    assert woken(alice.post("delete/", json={"oaio_id": stored["oaio_id"]})) == {"alice", "carol"}

    # a refused request, and a wipe (it removes only what nobody else reads), name nobody
    assert bob.post("upload/", json=next_version(stored, text="gone")).status_code == 404
    alone = carol.post("register/", json=new_object("carol", name="alone")).json()
    assert named.pop() == {"carol"}
    assert alice.post("wipe_user/", json={"Uid": "carol"}).ok
    assert alice.get("hub/versions/" + quote(alone["oaio_id"], safe="")).status_code == 404
    assert named == []


def test_change_feed_sleeps_through_changes_it_may_not_read(
    capped_hub: HubServer, hub_session: Callable[..., Any]
) -> None:
    hub = capped_hub
    assert hub.service is not None
    checks: list[str] = []
    has_changes = hub.service.has_changes

    def counted(username: str, since: str) -> tuple[str, bool]:
        cursor, changed = has_changes(username, since)
        if cursor > since:  # else nothing was committed since: answered from the cursor alone
            checks.append(username)
        return cursor, changed

    hub.service.has_changes = counted  # type: ignore[method-assign]
    alice, bob, carol = (hub_session(hub, name) for name in ("alice", "bob", "carol"))
    private = alice.post("register/", json=new_object("alice", name="private")).json()
    _ids, cursor, _ = _stampz(bob)
    checks.clear()

    poll = _park(hub, bob, cursor)
    _until_probe_answers(bob, 429)
    for number in range(3):
        private = alice.post("upload/", json=next_version(private, text=f"v{number}")).json()
    carol.post("register/", json=new_object("carol", name="hers"))
    alice.post("subscribe/", json={"oaio_id": private["oaio_id"], "username": "bob", "access_right": "r"})
    answer = _answer(poll)
    assert answer["changed"] is True and answer["sync_stamp"] > cursor
    # woken once, by his subscription: the four commits before it did not even cost him a check
    assert checks.count("bob") == 1


def test_change_feed_wakes_for_what_the_caller_may_read(capped_hub: HubServer, hub_session: Callable[..., Any]) -> None:
    hub = capped_hub
    alice, bob = hub_session(hub, "alice"), hub_session(hub, "bob")
    kept = alice.post("register/", json=new_object("alice", name="kept")).json()
    dropped = alice.post("register/", json=new_object("alice", name="dropped")).json()
    for stored in (kept, dropped):
        alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "r"})
    _ids, cursor, _ = _stampz(bob)

    changes = {
        "an upload": lambda: alice.post("upload/", json=next_version(kept, text="new")),
        "a stronger right": lambda: alice.post(
            "subscribe/", json={"oaio_id": kept["oaio_id"], "username": "bob", "access_right": "U"}
        ),
        "an unsubscribe": lambda: alice.post(
            "subscribe/", json={"oaio_id": kept["oaio_id"], "username": "bob", "access_right": "x"}
        ),
        "a deletion": lambda: alice.post("delete/", json={"oaio_id": dropped["oaio_id"]}),
    }
    for change, make in changes.items():
        poll = _park(hub, bob, cursor)
        _until_probe_answers(bob, 429)
        assert make().ok
        answer = _answer(poll)
        assert answer["changed"] is True and answer["sync_stamp"] > cursor, change
        cursor = answer["sync_stamp"]


def test_change_feed_polls_per_user_are_capped(
    db_url: str, hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]
) -> None:
    hub = hub_factory(db_url=db_url, feed_waiters_per_user=2)
    alice, bob, carol = (hub_session(hub, name) for name in ("alice", "bob", "carol"))
    _ids, cursor, _ = _stampz(bob)
    polls = [_park(hub, bob, cursor), _park(hub, bob, cursor)]
    refused = _until_probe_answers(bob, 429)
    assert refused.json()["error"] == "rate_limited" and refused.json()["reason"]
    assert refused.headers["Retry-After"] == "30"  # about one default poll: by then a waiting one has answered
    assert _probe(carol).status_code == 200  # the cap is per user

    # a client that hangs up mid-wait frees its slot
    polls.pop().close()
    _until_probe_answers(bob, 200)

    # so does a poll that times out ...
    short = _park(hub, bob, cursor, timeout=0.5)
    _until_probe_answers(bob, 429)
    assert _answer(short) == {"changed": False, "sync_stamp": cursor}
    _until_probe_answers(bob, 200)

    # ... and one that answers a change
    stored = alice.post("register/", json=new_object("alice")).json()
    polls.append(_park(hub, bob, cursor))
    _until_probe_answers(bob, 429)
    alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "r"})
    assert all(_answer(poll)["changed"] is True for poll in polls)
    _until_probe_answers(bob, 200)
