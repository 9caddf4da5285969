"""The hub under concurrency (issue 10 §5): eight clients of three users register, upload, subscribe, delete, poll
``oaio_stampz/?since=`` and read ``hub/versions/`` against one real hub at once; every request is recorded with its
answer and the time it was sent and answered, and the history is checked afterwards against the hub's promises
(docs/hub-api.md, design §8):

- no answer is a 5xx, and each route answers only what the protocol allows it;
- no two accepted ``upload/``s of one object from the same base: the accepted versions of an object form one chain
  from its ``register/`` (each ``server_stamp`` the previous ``client_stamp``), whose stamps strictly grow;
- every 409 carries the stored object: an accepted version, whose values are the ones sent, not older than any
  version accepted before the 409 was asked for, and one that justifies the refusal;
- every accepted version is readable: ``hub/versions/`` lists it (with the values sent, newest first) while the
  object exists, and lists nothing that was never accepted; listings show only accepted versions;
- every cursor chain (``since`` → ``X-Oaiod-Sync-Stamp`` → next ``since``, with ``hub/deleted/`` when
  ``X-Oaiod-Deleted-Count`` is not 0) saw every change its user may read that was committed before a poll was sent:
  the object in some answer of the chain with that version's stamp or a newer one, or its id in ``hub/deleted/``.

"Before" is real time as the clients saw it: an answer received before a request was sent. The run is seeded
(``OAIOD_HISTORY_SEED``) and bounded in time (``OAIOD_HISTORY_SECONDS``, 10 by default) and operations.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from oaiod.hub.server import HubServer
from oaiod.model import OBJECT_KEYS
from tests.hub.objects import new_object, next_version

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("OAIOD_HISTORY_SECONDS", "10"))
SEED = int(os.environ.get("OAIOD_HISTORY_SEED", "10"))
MAX_OPERATIONS = 400  #: per client
CLIENTS = ("alice-1", "alice-2", "alice-3", "bob-1", "bob-2", "bob-3", "carol-1", "carol-2")
SHARED = 3  #: objects alice registers and shares before the run: bob with U, carol with D
DELETABLE = SHARED - 1  #: the last shared object, which carol may delete during the run
ALLOWED = {  # what each route may answer in this run
    "register": {200},
    "upload": {200, 403, 404, 409},  # 403: only with r on the churn object; 404: deleted meanwhile
    "delete": {200, 404},
    "subscribe": {200, 404},
    "poll": {200},
    "deleted": {200},
    "versions": {200, 404},
}


@dataclass
class Call:
    """One request and its answer, with when it was sent and when the answer was in (``time.monotonic``)."""

    client: str
    user: str
    kind: str
    request: dict[str, Any]
    status: int
    body: Any
    headers: Mapping[str, str]
    sent: float
    answered: float


@dataclass
class Client:
    """One client's view: its session, the newest version it saw of each object, its cursor and own objects."""

    name: str
    session: Any
    rng: random.Random
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    own: list[str] = field(default_factory=list)
    cursor: str | None = None
    count: int = 0

    @property
    def user(self) -> str:
        return self.name.split("-")[0]


class History:
    """Every call of the run, appended under a lock."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.shared: list[str] = []  # alice's objects bob (U) and carol (D) read for the whole run
        self.churn = ""  # alice's object whose subscriptions change during the run
        self._lock = threading.Lock()

    def call(self, client: Client, kind: str, method: str, route: str, **request: Any) -> Call:
        sent = time.monotonic()
        answer = client.session.request(method, route, **request)
        answered = time.monotonic()
        try:
            body = answer.json()
        except ValueError:
            body = answer.text
        call = Call(client.name, client.user, kind, {"route": route, **request}, answer.status_code, body,
                    CaseInsensitiveDict(answer.headers), sent, answered)  # fmt: skip
        with self._lock:
            self.calls.append(call)
        return call


# -- the clients ------------------------------------------------------------------------------------------------


def register(history: History, client: Client, name: str) -> dict[str, Any] | None:
    obj = new_object(client.user, name=name, writer=client.name)
    call = history.call(client, "register", "POST", "register/", json=obj)
    if call.status != 200:
        return None
    client.seen[obj["oaio_id"]] = call.body
    return call.body


def upload(history: History, client: Client) -> None:
    live = sorted(oaio_id for oaio_id in client.seen if oaio_id not in client.gone)
    if not live:
        return
    oaio_id = client.rng.choice(live)
    client.count += 1
    version = next_version(client.seen[oaio_id], writer=client.name, n=client.count)
    call = history.call(client, "upload", "POST", "upload/", json=version)
    if call.status == 200:
        client.seen[oaio_id] = call.body
    elif call.status == 409 and isinstance(call.body, dict) and "object" in call.body:
        client.seen[oaio_id] = call.body["object"]
    elif call.status == 404:
        client.gone.add(oaio_id)


def poll(history: History, client: Client) -> None:
    params = {"since": client.cursor} if client.cursor else None
    call = history.call(client, "poll", "GET", "oaio_stampz/", params=params)
    if call.status != 200:
        return
    for obj in call.body:
        known = client.seen.get(obj["oaio_id"])
        if known is None or obj["client_stamp"] > known["client_stamp"]:
            client.seen[obj["oaio_id"]] = obj
        client.gone.discard(obj["oaio_id"])
    if client.cursor and int(call.headers.get("X-Oaiod-Deleted-Count", "0")):
        deleted = history.call(client, "deleted", "GET", "hub/deleted/", params={"since": client.cursor})
        if deleted.status == 200:
            client.gone.update(deleted.body["deleted"])
    client.cursor = call.headers["X-Oaiod-Sync-Stamp"]


def act(history: History, client: Client, shared: list[str], churn: str, started: float, seconds: float) -> None:
    """One random operation of ``client``."""
    roll = client.rng.random()
    if roll < 0.5:
        upload(history, client)
    elif roll < 0.75:
        poll(history, client)
    elif roll < 0.85:
        known = sorted(client.seen)
        if known:
            oaio_id = client.rng.choice(known)
            history.call(client, "versions", "GET", f"hub/versions/{oaio_id}")
    elif roll < 0.89 and len(client.own) < 3:
        obj = register(history, client, f"{client.name}-{len(client.own)}")
        if obj is not None:
            client.own.append(obj["oaio_id"])
    elif roll < 0.92 and client.own and client.rng.random() < 0.3:
        oaio_id = client.own.pop(0)
        history.call(client, "delete", "POST", "delete/", json={"oaio_id": oaio_id})
        client.gone.add(oaio_id)
    elif roll < 0.97 and client.user == "alice":  # subscriptions change only on the churn object
        right = client.rng.choice(("r", "U", "x"))
        body = {"oaio_id": churn, "username": client.rng.choice(("bob", "carol")), "access_right": right}
        history.call(client, "subscribe", "POST", "subscribe/", json=body)
    elif client.user == "carol" and time.monotonic() - started > seconds / 2 and client.rng.random() < 0.2:
        history.call(client, "delete", "POST", "delete/", json={"oaio_id": shared[DELETABLE]})


def run_client(
    history: History, client: Client, shared: list[str], churn: str, errors: list[BaseException], seconds: float
) -> None:
    started = time.monotonic()
    try:
        poll(history, client)  # the chain starts with a full listing
        for _operation in range(MAX_OPERATIONS):
            if time.monotonic() - started > seconds:
                break
            act(history, client, shared, churn, started, seconds)
        poll(history, client)
    except BaseException as exc:  # reported by the test: a client that died made a short history
        errors.append(exc)


def record_history(session_for: Callable[[str, str], Any], seconds: float = SECONDS) -> History:
    """The recorded run: alice shares SHARED objects (bob U, carol D) and a churn object, then all clients go.

    ``session_for(user, device)`` is a logged-in session of ``user`` (one per client)."""
    history = History()
    rng = random.Random(SEED)
    clients = {name: Client(name, session_for(name.split("-")[0], name), random.Random(rng.random()))
               for name in CLIENTS}  # fmt: skip
    alice = clients["alice-1"]
    shared = []
    for number in range(SHARED + 1):
        obj = register(history, alice, f"shared-{number}")
        assert obj is not None
        shared.append(obj["oaio_id"])
        if number < SHARED:
            for user, right in (("bob", "U"), ("carol", "D")):
                body = {"oaio_id": obj["oaio_id"], "username": user, "access_right": right}
                assert history.call(alice, "subscribe", "POST", "subscribe/", json=body).status == 200
    churn = shared.pop()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=run_client, args=(history, client, shared, churn, errors, seconds),
                                name=client.name) for client in clients.values()]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert not errors, errors
    for oaio_id in (*shared, churn):
        history.call(alice, "versions", "GET", f"hub/versions/{oaio_id}")
    for client in clients.values():
        for oaio_id in client.own:
            history.call(client, "versions", "GET", f"hub/versions/{oaio_id}")
    history.shared, history.churn = shared, churn
    return history


@pytest.fixture
def history(hub: HubServer, hub_session: Callable[..., Any]) -> History:
    """The recorded run against one hub."""
    return record_history(lambda user, device: hub_session(hub, user, device=device))


# -- the checks -----------------------------------------------------------------------------------------------------


@dataclass
class Version:
    """An accepted version: its stamp, base, values and the call that made it."""

    stamp: str
    base: str
    values: dict[str, Any]
    call: Call


def accepted_versions(calls: list[Call]) -> dict[str, list[Version]]:
    """``oaio_id -> [Version]`` of every 200 ``register/`` and ``upload/``, in the order their answers came."""
    versions: dict[str, list[Version]] = defaultdict(list)
    for call in sorted(calls, key=lambda c: c.answered):
        if call.kind in ("register", "upload") and call.status == 200:
            sent = call.request["json"]
            assert call.body["client_stamp"] == sent["client_stamp"], "the hub stored another stamp than sent"
            assert call.body["client_values"] == sent["client_values"], "the hub stored other values than sent"
            versions[sent["oaio_id"]].append(Version(sent["client_stamp"], sent["server_stamp"], sent["client_values"],
                                                     call))  # fmt: skip
    return versions


def deletions(calls: list[Call]) -> dict[str, Call]:
    """``oaio_id -> the first accepted delete/``."""
    deleted: dict[str, Call] = {}
    for call in sorted(calls, key=lambda c: c.answered):
        if call.kind == "delete" and call.status == 200:
            deleted.setdefault(call.request["json"]["oaio_id"], call)
    return deleted


def check_answers(calls: list[Call], churn: str) -> None:
    for call in calls:
        assert call.status < 500, f"{call.kind} answered {call.status}: {call.body}"
        assert call.status in ALLOWED[call.kind], f"{call.client} {call.kind}: {call.status} {call.body}"
        if call.status == 403:
            assert call.request["json"]["oaio_id"] == churn, f"{call.client} {call.kind}: 403 {call.body}"


def check_chains(versions: dict[str, list[Version]]) -> None:
    """One chain per object from its register: no two accepted uploads from one base, stamps strictly grow."""
    for oaio_id, accepted in versions.items():
        bases = [version.base for version in accepted]
        twice = {base for base in bases if bases.count(base) > 1}
        assert not twice, f"{oaio_id}: two accepted uploads from the base(s) {sorted(twice)}"
        by_base = {version.base: version for version in accepted}
        chain, base = [], ""
        while base in by_base:
            chain.append(by_base[base])
            base = by_base[base].stamp
        assert len(chain) == len(accepted), f"{oaio_id}: accepted versions outside the chain from its register"
        stamps = [version.stamp for version in chain]
        assert stamps == sorted(set(stamps)), f"{oaio_id}: stamps do not strictly grow: {stamps}"
        assert all(v.call.answered >= b.call.sent for b, v in itertools.pairwise(chain))


def stored_version(versions: dict[str, list[Version]], oaio_id: str, obj: dict[str, Any], call: Call) -> Version:
    """The accepted version ``obj`` (an object the hub answered in ``call``) stands for, checked to be one that was
    committed before ``call`` was answered and not older than any answered before ``call`` was sent."""
    by_stamp = {version.stamp: version for version in versions.get(oaio_id, [])}
    version = by_stamp.get(obj["client_stamp"])
    assert version is not None, f"{call.kind}: {oaio_id} at {obj['client_stamp']}, a version never accepted"
    assert obj["client_values"] == version.values, f"{call.kind}: {oaio_id} with other values than were sent"
    assert version.call.sent <= call.answered, f"{call.kind} answered a version before it was sent"
    newest_before = [v.stamp for v in by_stamp.values() if v.call.answered < call.sent]
    assert obj["client_stamp"] >= max(newest_before, default=""), f"{call.kind}: {oaio_id} older than committed"
    return version


def check_conflicts(calls: list[Call], versions: dict[str, list[Version]]) -> int:
    """Every 409 of upload/ carries the stored object, which justifies the refusal."""
    conflicts = 0
    for call in calls:
        if call.kind != "upload" or call.status != 409:
            continue
        conflicts += 1
        sent = call.request["json"]
        assert call.body["error"] == "conflict" and call.body["reason"], call.body
        stored = call.body.get("object")
        assert isinstance(stored, dict) and tuple(stored) == OBJECT_KEYS, f"a 409 without the stored object: {call}"
        assert stored["oaio_id"] == sent["oaio_id"]
        stored_version(versions, sent["oaio_id"], stored, call)
        assert stored["client_stamp"] != sent["server_stamp"] or sent["client_stamp"] <= stored["client_stamp"]
    return conflicts


def check_versions(calls: list[Call], versions: dict[str, list[Version]], deleted: dict[str, Call], churn: str) -> int:
    """hub/versions/ lists, newest first, every version accepted before it was asked and only accepted ones."""
    checked = 0
    for call in calls:
        if call.kind != "versions":
            continue
        oaio_id = call.request["route"].removeprefix("hub/versions/")
        gone = deleted.get(oaio_id)
        if call.status == 404:
            unreadable = gone is not None and gone.sent <= call.answered
            assert unreadable or (oaio_id == churn and call.user != "alice"), f"{oaio_id} unreadable: {call.body}"
            continue
        if gone is not None and gone.answered < call.sent:
            raise AssertionError(f"hub/versions/ of {oaio_id} answered after its delete/ was: {call.body}")
        listed = [item["stamp"] for item in call.body]
        assert listed == sorted(listed, reverse=True) and len(set(listed)) == len(listed), listed
        by_stamp = {version.stamp: version for version in versions.get(oaio_id, [])}
        for item in call.body:
            version = by_stamp.get(item["stamp"])
            assert version is not None and version.call.sent <= call.answered, f"{oaio_id}: {item} never accepted"
            assert item["values"] == version.values
        for version in by_stamp.values():
            if version.call.answered < call.sent:
                assert version.stamp in listed, f"{oaio_id}: accepted {version.stamp} missing from hub/versions/"
        checked += 1
    return checked


def entitled(user: str, oaio_id: str, shared: list[str], creators: dict[str, str]) -> bool:
    """Whether ``user`` may read ``oaio_id`` for the whole run (the churn object's readers change: left out)."""
    return oaio_id in shared or creators.get(oaio_id) == user


@dataclass
class ChainView:
    """What one client's cursor chain has shown so far."""

    listed: dict[str, str] = field(default_factory=dict)  # oaio_id -> the newest stamp shown
    gone: set[str] = field(default_factory=set)  # ids hub/deleted/ named


def check_cursor_chains(
    calls: list[Call], versions: dict[str, list[Version]], deleted: dict[str, Call], shared: list[str]
) -> int:
    """Each client's polls form one chain (each ``since`` the previous answer's cursor), and the answers up to each
    poll show every change its user may read that was committed before the poll was sent."""
    creators = {oaio_id: accepted[0].call.user for oaio_id, accepted in versions.items()}
    checked = 0
    for client in CLIENTS:
        chain = sorted((c for c in calls if c.client == client and c.kind in ("poll", "deleted")), key=lambda c: c.sent)
        view, cursor = ChainView(), None
        for index, call in enumerate(chain):
            if call.kind == "deleted":
                continue
            since = (call.request.get("params") or {}).get("since")
            assert since == cursor, f"{client}: the chain broke ({since} after {cursor})"
            for obj in call.body:
                stored_version(versions, obj["oaio_id"], obj, call)
                view.listed[obj["oaio_id"]] = max(obj["client_stamp"], view.listed.get(obj["oaio_id"], ""))
            count = int(call.headers["X-Oaiod-Deleted-Count"])
            following = chain[index + 1] if index + 1 < len(chain) else None
            if following is not None and following.kind == "deleted":
                assert following.request["params"]["since"] == since and count > 0
                view.gone.update(following.body["deleted"])
            cursor = call.headers["X-Oaiod-Sync-Stamp"]
            assert since is None or cursor >= since, f"{client}: the cursor went back"
            check_poll_saw_everything(call, client.split("-")[0], versions, deleted, shared, creators, view)
            checked += 1
    return checked


def check_poll_saw_everything(
    call: Call,
    user: str,
    versions: dict[str, list[Version]],
    deleted: dict[str, Call],
    shared: list[str],
    creators: dict[str, str],
    view: ChainView,
) -> None:
    """Every version ``user`` may read committed before ``call`` was sent is shown by the chain (or a newer one),
    unless the object was deleted; a deletion committed before it is named by hub/deleted/ if the chain had shown
    the object."""
    for oaio_id, accepted in versions.items():
        if not entitled(user, oaio_id, shared, creators):
            continue
        committed = [version for version in accepted if version.call.answered < call.sent]
        if not committed or view.listed.get(oaio_id, "") >= committed[-1].stamp:
            continue
        removal = deleted.get(oaio_id)
        assert removal is not None and removal.sent < call.answered, (
            f"{call.client}: the poll since {call.request.get('params')} and the chain before it never showed "
            f"{oaio_id} at {committed[-1].stamp} (newest shown: {view.listed.get(oaio_id)!r})"
        )
    for oaio_id, removal in deleted.items():
        if removal.answered < call.sent and oaio_id in view.listed and entitled(user, oaio_id, shared, creators):
            assert oaio_id in view.gone, f"{call.client}: shown {oaio_id}, but never told of its deletion"


def check_history(recorded: History) -> str:
    """Every check of the module docstring over a recorded run; a one-line summary of it."""
    calls = recorded.calls
    shared, churn = recorded.shared, recorded.churn
    check_answers(calls, churn)
    versions = accepted_versions(calls)
    deleted = deletions(calls)
    check_chains(versions)
    conflicts = check_conflicts(calls, versions)
    reads = check_versions(calls, versions, deleted, churn)
    polls = check_cursor_chains(calls, versions, deleted, shared)
    uploads = sum(1 for call in calls if call.kind == "upload")
    accepted = sum(len(v) for v in versions.values())
    assert conflicts > 0 and accepted > len(versions) and polls > len(CLIENTS), "the run raced too little"
    return (f"{len(calls)} calls, {uploads} uploads ({accepted} versions accepted, {conflicts} 409s), "
            f"{polls} polls, {reads} version reads, {len(deleted)} deletions")  # fmt: skip


def test_concurrent_clients_keep_the_hubs_promises(history: History) -> None:
    print("history:", check_history(history))


# -- the checker catches what it looks for (synthetic histories, no hub) --------------------------------------------


def _call(kind: str, at: float, status: int = 200, body: Any = None, client: str = "bob-1", **request: Any) -> Call:
    headers = CaseInsensitiveDict(request.pop("headers", {}))
    return Call(client, client.split("-")[0], kind, request, status, body, headers, at, at + 0.5)


def _version(oaio_id: str, base: str, stamp: str, at: float, client: str = "alice-1") -> Call:
    sent = {"oaio_id": oaio_id, "server_stamp": base, "client_stamp": stamp, "client_values": {"n": stamp}}
    kind = "upload" if base else "register"
    return _call(kind, at, body={**sent}, client=client, route=f"{kind}/", json=sent)


def test_the_checker_sees_a_lost_update() -> None:
    calls = [_version("o", "", "1", 0), _version("o", "1", "2", 1), _version("o", "1", "3", 2, client="bob-1")]
    with pytest.raises(AssertionError, match="two accepted uploads"):
        check_chains(accepted_versions(calls))


def test_the_checker_sees_a_poll_that_missed_a_change() -> None:
    poll_headers = {"X-Oaiod-Sync-Stamp": "5", "X-Oaiod-Deleted-Count": "0"}
    calls = [
        _version("o", "", "1", 0),
        _call("poll", 1, body=[{"oaio_id": "o", "client_stamp": "1", "client_values": {"n": "1"}}],
              route="oaio_stampz/", params=None, headers=poll_headers),
        _version("o", "1", "2", 2),
        _call("poll", 3, body=[], route="oaio_stampz/", params={"since": "5"}, headers=poll_headers),
    ]  # fmt: skip
    with pytest.raises(AssertionError, match="never showed o at 2"):
        check_cursor_chains(calls, accepted_versions(calls), {}, ["o"])


def test_the_checker_sees_a_409_without_the_newest_version() -> None:
    stale = {"oaio_id": "o", "client_stamp": "1", "client_values": {"n": "1"}}
    refused = {"oaio_id": "o", "server_stamp": "1", "client_stamp": "3", "client_values": {}}
    calls = [
        _version("o", "", "1", 0),
        _version("o", "1", "2", 1),
        _call("upload", 2, 409, {"error": "conflict", "reason": "r", "object": {**dict.fromkeys(OBJECT_KEYS), **stale}},
              route="upload/", json=refused),
    ]  # fmt: skip
    with pytest.raises(AssertionError, match="older than committed"):
        check_conflicts(calls, accepted_versions(calls))
