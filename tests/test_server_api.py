"""oaiod.server_api against the real hub (the ``hub`` fixture of tests/conftest.py) over loopback HTTP, and
against a scripted plain oaio server (tests/httpfixtures.py) for what the hub never does: no part B, hostile data.

The clock-skew test injects a clock function into OaioServerApi instead of changing the machine's time.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from oaiod.http import AuthError, HTTPStatusError, NotFound, PermissionDenied, ProtocolError, RetryPolicy
from oaiod.model import OaiObject, now_stamp, object_id, stamp_to_datetime
from oaiod.secrets import Secret
from oaiod.server_api import ClockSkewError, NotSupported, OaioServerApi, UploadConflict
from tests.httpfixtures import OaioLoginRules, Reply, ScriptedServer

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_total_delay=2.0)
APP = "oaiod-test"


def connect(hub: Any, user: str = "alice", device: str = "dev1", **kwargs: Any) -> OaioServerApi:
    return OaioServerApi(
        hub.host, user, Secret(hub.users[user]), device_id=device, app_id=APP, retry=FAST, timeout=(5.0, 30.0), **kwargs
    )


@pytest.fixture
def alice(hub: Any) -> Iterator[OaioServerApi]:
    api = connect(hub, "alice")
    yield api
    api.close()


@pytest.fixture
def bob(hub: Any) -> Iterator[OaioServerApi]:
    api = connect(hub, "bob", "dev2")
    yield api
    api.close()


def new_object(api: OaioServerApi, name: str, **values: Any) -> OaiObject:
    stamp = now_stamp()
    values = {"_name": f"{name} {stamp}", **values}
    return OaiObject(
        oaio_id=object_id(api.username, api.device_id, api.app_id, stamp, values),
        client_stamp=stamp,
        client_values=values,
        csh_id="Local",
        username=api.username,
        device_id=api.device_id,
        app_id=api.app_id,
    )


def next_version(obj: OaiObject, **values: Any) -> OaiObject:
    data = obj.to_dict()
    data.update(server_stamp=obj.client_stamp, client_stamp=now_stamp(), server_values=obj.client_values)
    data["client_values"] = {**obj.client_values, **values}
    return OaiObject(**data)


def logins(api: OaioServerApi) -> int:
    return sum(1 for t in api.http.timings if t.method == "POST" and t.url.endswith("/login/"))


# -- session and clock ----------------------------------------------------------------------------------------------


def test_login_current_stamp_and_reconnect(hub: Any, alice: OaioServerApi) -> None:
    assert alice.http.base_url == hub.url
    alice.login()
    stamp = alice.current_stamp()
    assert abs((stamp_to_datetime(stamp) - datetime.datetime.now(datetime.UTC)).total_seconds()) < 69
    assert abs(alice.check_clock()) < 69
    alice.logout()
    assert alice.current_stamp() >= stamp  # logged in again by itself
    auth = alice.http.auth
    for cookie in list(auth.cookies):  # type: ignore[union-attr]
        if cookie.name != "csrftoken":
            cookie.value = "expired-" + cookie.value  # a session the hub no longer knows
    assert alice.current_stamp() >= stamp
    assert logins(alice) == 3


def test_wrong_password(hub: Any) -> None:
    api = OaioServerApi(hub.host, "bob", Secret("not-" + hub.users["bob"]), device_id="d", app_id=APP, retry=FAST)
    with pytest.raises(AuthError) as caught:
        api.current_stamp()
    assert hub.users["bob"] not in str(caught.value)


def test_clock_skew_is_refused_beyond_69_seconds(hub: Any) -> None:
    def clock_off_by(seconds: float) -> Any:
        return lambda: (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)).strftime(
            "%Y%m%d%H%M%S%f"
        )

    assert abs(connect(hub, clock=clock_off_by(50)).check_clock()) < 69
    with pytest.raises(ClockSkewError) as caught:
        connect(hub, clock=clock_off_by(-120)).check_clock()
    err = caught.value
    assert err.local_stamp in str(err) and err.server_stamp in str(err) and 115 < err.seconds < 125


def test_features_are_detected_once(alice: OaioServerApi) -> None:
    assert {"since", "conflict409", "changes"} <= alice.features()
    assert alice.features() is alice.features()
    assert alice.hub_version
    assert sum(1 for t in alice.http.timings if "/hub/features/" in t.url) == 1


# -- objects ------------------------------------------------------------------------------------------------------


def test_register_upload_conflict_and_versions(alice: OaioServerApi) -> None:
    obj = new_object(alice, "notes", text="v1")
    stored = alice.register(obj)
    assert stored.oaio_id == obj.oaio_id and stored.client_values == obj.client_values
    assert stored.csh_access_right == "C" and stored.server_stamp == ""
    v2 = next_version(stored, text="v2")
    stored2 = alice.upload(v2)
    assert (stored2.client_stamp, stored2.server_stamp) == (v2.client_stamp, stored.client_stamp)
    assert stored2.server_values == {}  # lean (the hub keeps them): test_lean_objects_leave_the_old_values_at_the_hub

    stale = next_version(stored, text="lost?")  # built on v1, not on v2
    with pytest.raises(UploadConflict) as caught:
        alice.upload(stale)
    assert caught.value.status == 409 and caught.value.server_object == stored2
    with pytest.raises(UploadConflict) as again:
        alice.register(obj)
    assert again.value.server_object is not None and again.value.server_object.oaio_id == obj.oaio_id

    versions = alice.versions(obj.oaio_id)
    assert [v.stamp for v in versions][:2] == [v2.client_stamp, obj.client_stamp]
    assert versions[0].values["text"] == "v2"


def test_lean_objects_leave_the_old_values_at_the_hub(hub: Any, alice: OaioServerApi) -> None:
    """On an oaiod hub objects travel without ``server_values`` (feature ``lean``): for a folder they are a second
    copy of its manifest, and oaiod never reads them. The hub keeps them: a client wanting the published client's
    full objects (``lean=False``, or a plain client without the header) gets them in every answer."""
    manifest = "x" * 20_000  # an error body is read up to 64 KiB: the full 409 below still fits
    stored = alice.register(new_object(alice, "folder", manifest=manifest, n=1))
    alice.http.timings.clear()
    stored2 = alice.upload(next_version(stored, n=2))
    listed = {obj.oaio_id: obj for obj in alice.stampz().objects}[stored.oaio_id]
    assert stored2.server_values == {} and listed.server_values == {} and listed.client_values["n"] == 2
    upload = next(t for t in alice.http.timings if t.url.endswith("/upload/"))
    assert manifest_copies(upload.bytes_sent, manifest) == 1 and manifest_copies(upload.bytes_received, manifest) == 1
    full = connect(hub, "alice", "dev3", lean=False)
    try:
        listed = {obj.oaio_id: obj for obj in full.stampz().objects}[stored.oaio_id]
        assert listed.server_values == stored.client_values and listed.client_values == stored2.client_values
        stored3 = full.upload(next_version(stored2, n=3))
        assert stored3.server_values == stored2.client_values
        with pytest.raises(UploadConflict) as caught:  # a 409 carries the full stored object too
            full.upload(next_version(stored2, n=4))
        assert caught.value.server_object is not None and caught.value.server_object.server_values["n"] == 2
        with pytest.raises(UploadConflict) as caught:  # and the lean one, the lean object
            alice.upload(next_version(stored2, n=4))
        assert caught.value.server_object is not None and caught.value.server_object.server_values == {}
        assert caught.value.server_object.client_values["n"] == 3
    finally:
        full.close()


def manifest_copies(size: int, manifest: str) -> int:
    """How many copies of ``manifest`` a body of ``size`` bytes can hold (the rest of an object is small)."""
    return size // len(manifest)


def test_stampz_full_then_deltas_with_deletions(alice: OaioServerApi) -> None:
    first, second = alice.register(new_object(alice, "a")), alice.register(new_object(alice, "b"))
    full = alice.stampz()
    assert full.full and not full.deleted_ids and full.sync_stamp
    assert {first.oaio_id, second.oaio_id} <= {o.oaio_id for o in full.objects}

    updated = alice.upload(next_version(first, n=2))
    delta = alice.stampz(since=full.sync_stamp)
    assert not delta.full and [o.oaio_id for o in delta.objects] == [first.oaio_id]
    assert delta.objects[0] == updated and delta.deleted_ids == [] and delta.sync_stamp > full.sync_stamp

    alice.delete(second)
    gone = alice.stampz(since=delta.sync_stamp)
    assert gone.objects == [] and gone.deleted_ids == [second.oaio_id]
    quiet = alice.stampz(since=gone.sync_stamp)
    assert (quiet.objects, quiet.deleted_ids, quiet.full) == ([], [], False)


def test_stampz_since_older_than_the_tombstones_lists_everything(alice: OaioServerApi) -> None:
    obj = alice.register(new_object(alice, "old cursor"))
    result = alice.stampz(since="20230101000000000000")
    assert result.full and obj.oaio_id in {o.oaio_id for o in result.objects}
    assert 410 in {t.status for t in alice.http.timings}  # the hub said "gone", the client listed everything


def test_csh_args(hub: Any, alice: OaioServerApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oaiod")
    kwargs = {"root_folder": "/srv/oaio", "password": "csh-S3CRET-pw", "port": 8080}
    hub.service.set_storage("Dav Host", kwargs)  # a space: the id is URL-encoded in the route
    assert alice.csh_args("Dav Host") == kwargs
    with pytest.raises(NotFound):
        alice.csh_args("NoSuchHost")
    assert "csh-S3CRET-pw" not in caplog.text and hub.users["alice"] not in caplog.text
    assert "curl" in caplog.text  # the debug log was on


# -- subscriptions and users ----------------------------------------------------------------------------------------


def test_subscribe_read_only_and_unsubscribe(alice: OaioServerApi, bob: OaioServerApi) -> None:
    obj = alice.register(new_object(alice, "shared"))
    cursor = bob.stampz().sync_stamp
    pid = alice.subscribe(obj.oaio_id, "bob", "r")
    assert isinstance(pid, int) and pid > 0
    seen = bob.stampz(since=cursor)
    assert [(o.oaio_id, o.csh_access_right) for o in seen.objects] == [(obj.oaio_id, "r")]
    rights = {row["username"]: row["access_right"] for row in alice.user_subz(obj.oaio_id)}
    assert (rights["alice"], rights["bob"], rights["carol"]) == ("C", "r", "x")
    unknown = alice.user_subz(new_object(alice, "never registered").oaio_id)
    assert {"alice", "bob", "carol"} <= {row["username"] for row in unknown}
    assert {row["access_right"] for row in unknown} == {"x"}
    with pytest.raises(PermissionDenied):
        bob.upload(next_version(obj, by="bob"))
    with pytest.raises(PermissionDenied):
        bob.delete(obj)
    with pytest.raises(HTTPStatusError) as creator:
        alice.unsubscribe(obj.oaio_id, "alice")
    assert 400 <= creator.value.status < 500

    alice.unsubscribe(obj.oaio_id, "bob")
    after = bob.stampz(since=seen.sync_stamp)
    assert after.deleted_ids == [obj.oaio_id] and after.objects == []


def test_supervisor_acts_for_another_user_and_wipes_one(alice: OaioServerApi, bob: OaioServerApi) -> None:
    obj = bob.register(new_object(bob, "bob's"))
    as_bob = alice.as_user("bob")
    assert obj.oaio_id in {o.oaio_id for o in as_bob.stampz().objects}
    assert obj.oaio_id not in {o.oaio_id for o in alice.stampz().objects}

    mine = alice.register(new_object(alice, "for dave"))
    alice.subscribe(mine.oaio_id, "dave", "r")  # a supervisor may name a user that does not exist yet
    assert "dave" in {row["username"] for row in alice.user_subz(mine.oaio_id)}
    alice.wipe_user("dave")
    assert "dave" not in {row["username"] for row in alice.user_subz(mine.oaio_id)}
    with pytest.raises(HTTPStatusError) as refused:
        bob.wipe_user("carol")
    assert 400 <= refused.value.status < 500


# -- the change feed ------------------------------------------------------------------------------------------------


def test_change_feed_wakes_on_a_change_and_times_out_without(alice: OaioServerApi, bob: OaioServerApi) -> None:
    obj = alice.register(new_object(alice, "watched"))
    alice.subscribe(obj.oaio_id, "bob", "r")
    cursor = bob.stampz().sync_stamp
    changed, _cursor = bob.wait_for_changes(cursor, timeout=0.3)
    assert changed is False

    woke: list[tuple[bool, str]] = []
    waiter = threading.Thread(target=lambda: woke.append(bob.wait_for_changes(cursor, timeout=30)))
    waiter.start()
    time.sleep(0.3)
    alice.upload(next_version(obj, n=1))
    waiter.join(timeout=40)
    assert woke and woke[0][0] is True and woke[0][1] > cursor
    delta = bob.stampz(since=cursor)
    assert [o.oaio_id for o in delta.objects] == [obj.oaio_id]


# -- a plain oaio server (scripted): no part B, hostile answers ---------------------------------------------------


@pytest.fixture
def plain() -> Iterator[tuple[ScriptedServer, OaioLoginRules]]:
    server = ScriptedServer()
    rules = OaioLoginRules(server, {"alice": "pw-alice-123"})
    yield server, rules
    server.close()


def plain_api(server: ScriptedServer) -> OaioServerApi:
    return OaioServerApi(server.url, "alice", "pw-alice-123", device_id="dev1", app_id=APP, retry=FAST)


def good_object(**changes: Any) -> dict[str, Any]:
    stamp = now_stamp()
    values = {"_name": "x"}
    obj = OaiObject(object_id("alice", "dev1", APP, stamp, values), stamp, "", values, {}, "Local", "alice", "dev1")
    return {**obj.to_dict(), "csh_access_right": "C", **changes}


def test_plain_server_without_part_b(plain: tuple[ScriptedServer, OaioLoginRules]) -> None:
    server, rules = plain
    listing = [good_object()]
    rules.route("GET", "oaio_stampz/", lambda seen: Reply(200, listing))
    api = plain_api(server)
    assert api.features() == frozenset()
    result = api.stampz(since=now_stamp())
    assert result.full and result.sync_stamp == "" and [o.to_dict() for o in result.objects] == listing
    assert "since" not in server.requests_to("/api/oaio_stampz/")[0].query
    with pytest.raises(NotSupported):
        api.wait_for_changes(now_stamp(), timeout=1)
    with pytest.raises(NotSupported):
        api.versions(listing[0]["oaio_id"])
    for seen in server.seen:  # the context headers go with every request, login and CSRF fetch included
        assert (seen.headers["x-oaio-user"], seen.headers["x-oaio-dvc"]) == ("b'alice'", "b'dev1'")
        assert seen.headers["x-oaio-app"] == repr(APP.encode())


@pytest.mark.parametrize(
    "bad",
    [
        {"extra": 1},
        {"client_values": {"_file_paths": ["../../etc/passwd"]}},
        {"oaio_id": "a/b"},
        {"client_stamp": "yesterday"},
        {"csh_access_right": "Z"},
    ],
)
def test_hostile_objects_are_refused(plain: tuple[ScriptedServer, OaioLoginRules], bad: dict[str, Any]) -> None:
    """A hostile object is refused alone: the rest of a listing stays usable (the engine reports the refused one)."""
    server, rules = plain
    good, hostile = good_object(), good_object(**bad)
    rules.route("GET", "oaio_stampz/", lambda seen: Reply(200, [good, hostile]))
    rules.route("POST", "upload/", lambda seen: Reply(409, {"error": "conflict", "object": good_object(**bad)}))
    api = plain_api(server)
    result = api.stampz()
    assert [obj.to_dict() for obj in result.objects] == [good]
    [rejected] = result.rejected
    assert rejected.oaio_id == (None if "oaio_id" in bad else hostile["oaio_id"])
    assert rejected.reason.startswith("the server sent an invalid ")
    with pytest.raises(ProtocolError, match="conflict"):
        api.upload(OaiObject(**{**good_object(), "csh_access_right": ""}))


def test_empty_2xx_answers_where_the_spec_promises_no_body(plain: tuple[ScriptedServer, OaioLoginRules]) -> None:
    server, rules = plain
    rules.route("POST", "delete/", lambda seen: Reply(204))
    rules.route("POST", "wipe_user/", lambda seen: Reply(200, body=b""))
    api = plain_api(server)
    api.delete(good_object()["oaio_id"])
    api.wipe_user("bob")
    assert server.requests_to("/api/wipe_user/", "POST")[0].json() == {"Uid": "bob"}


def test_hostile_shapes_are_refused(plain: tuple[ScriptedServer, OaioLoginRules]) -> None:
    server, rules = plain
    rules.route("GET", "current_stamp/", lambda seen: Reply(200, {"current_stamp": "20991"}))
    rules.route("GET", "oaio_stampz/", lambda seen: Reply(200, {"not": "a list"}))
    rules.route("POST", "subscribe/", lambda seen: Reply(200, {"Pid": True}))
    rules.route("GET", "csh_args/Digi", lambda seen: Reply(200, ["not", "a", "dict"]))
    api = plain_api(server)
    for call in (api.current_stamp, api.stampz, lambda: api.subscribe(good_object()["oaio_id"], "bob", "r")):
        with pytest.raises(ProtocolError):
            call()
    with pytest.raises(ProtocolError):
        api.csh_args("Digi")
