"""The bad-input sweep: hostile or broken requests on every route answer 4xx JSON with a reason and change nothing.

All cases run against one hub holding an object (alice's, bob subscribed read-only); every table but the
sessions is compared before and after the whole sweep, and the hub must still work normally afterwards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from oaiod.hub.server import HubServer
from oaiod.model import context_encode, now_stamp
from tests.hub.objects import new_object, next_version

pytestmark = pytest.mark.integration

BODY_LIMIT = 256 * 1024
JSON_ROUTES = ("login/", "register/", "upload/", "delete/", "subscribe/", "wipe_user/")
FUTURE = "29991231235959000000"


def _object_cases(good: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Broken variants of a valid object dict."""
    yield "extra key", {**good, "owner": "mallory"}
    for key in good:
        yield f"missing {key}", {k: v for k, v in good.items() if k != key}
        yield f"{key} wrong type", {**good, key: 12345 if key != "csh_id" else ["Local"]}
    for stamp in ("2023", "20221231111111012345", "20231340000000000000", "2O231201000000000000", FUTURE, None):
        yield f"client_stamp {stamp}", {**good, "client_stamp": stamp}
    yield "server_stamp garbage", {**good, "server_stamp": "yesterday"}
    for bad_id in ("a/b", "..", " lead", "app://user", "x" * 300, "a\x00b", "a\u202eb", ""):
        yield f"oaio_id {bad_id[:12]!r}", {**good, "oaio_id": bad_id}
    for paths in (["../etc/passwd"], ["/abs"], ["a\\b"], ["a//b"], ["C:x"], ["x\x00"], ["a/"], ["a", "a"], "a", [1]):
        yield f"_file_paths {paths!r}", {**good, "client_values": {"_file_paths": paths}}
    for root in (5, "", "{usr}/x{y}", "a\x01b"):
        yield f"_root_path {root!r}", {**good, "client_values": {"_root_path": root}}
    yield "_name not a string", {**good, "client_values": {"_name": ["x"]}}
    yield "values a list", {**good, "client_values": ["x"]}
    yield "right Z", {**good, "csh_access_right": "Z"}
    yield "username control char", {**good, "username": "a\nb"}


def _requests(hub: HubServer, good: dict[str, Any], stored: dict[str, Any]) -> Iterator[tuple[str, str, str, dict]]:
    """``(label, method, route, requests kwargs)`` for every hostile request of the sweep."""
    for route in JSON_ROUTES:
        yield f"{route} malformed", "POST", route, {"data": b"{", "headers": {"content-type": "application/json"}}
        yield (
            f"{route} text/plain",
            "POST",
            route,
            {"data": json.dumps(good), "headers": {"content-type": "text/plain"}},
        )
        yield f"{route} no body", "POST", route, {}
        yield f"{route} NaN", "POST", route, {"data": b'{"a": NaN}', "headers": {"content-type": "application/json"}}
        deep = b"[" * 100_000 + b"]" * 100_000
        yield f"{route} deep", "POST", route, {"data": deep, "headers": {"content-type": "application/json"}}
        yield (
            f"{route} bad utf-8",
            "POST",
            route,
            {"data": b'{"a": "\xff"}', "headers": {"content-type": "application/json"}},
        )
        yield (
            f"{route} huge int",
            "POST",
            route,
            {"data": b'{"a": ' + b"9" * 5000 + b"}", "headers": {"content-type": "application/json"}},
        )
        for body in ([], 5, "x", None, [good]):
            yield f"{route} {type(body).__name__}", "POST", route, {"json": body}
        yield f"{route} too large", "POST", route, {"json": {"a": "x" * BODY_LIMIT}}
        chunked = (b'{"a": "' + b"x" * 65536 for _ in range(8))
        yield (
            f"{route} too large chunked",
            "POST",
            route,
            {"data": chunked, "headers": {"content-type": "application/json"}},
        )
    for label, body in _object_cases(good):
        yield f"register {label}", "POST", "register/", {"json": body}
    for label, body in _object_cases(next_version(stored)):
        yield f"upload {label}", "POST", "upload/", {"json": body}
    yield "upload stale", "POST", "upload/", {"json": {**next_version(stored), "server_stamp": good["client_stamp"]}}
    oaio_id = stored["oaio_id"]
    for body in ({}, {"oaio_id": 5}, {"oaio_id": "a/b"}, {"oaio_id": oaio_id, "foo": 1}, {"oaio_id": "nope"}):
        yield f"delete {body}", "POST", "delete/", {"json": body}
    subscribe_bad = [
        {"oaio_id": oaio_id, "username": "carol"},
        {"oaio_id": oaio_id, "username": "carol", "access_right": "Q"},
        {"oaio_id": oaio_id, "username": "carol", "access_right": 5},
        {"oaio_id": oaio_id, "username": "bad name!", "access_right": "r"},
        {"oaio_id": oaio_id, "username": "", "access_right": "r"},
        {"oaio_id": oaio_id, "username": "u" * 151, "access_right": "r"},
        {"oaio_id": oaio_id, "username": "nobody", "access_right": "r"},
        {"oaio_id": "a/b", "username": "carol", "access_right": "r"},
        {"oaio_id": oaio_id, "username": "carol", "access_right": "C"},
        {"oaio_id": oaio_id, "username": "alice", "access_right": "x"},
        {"oaio_id": oaio_id, "username": "carol", "access_right": "r", "Pid": 1},
    ]
    for body in subscribe_bad:
        yield f"subscribe {body}", "POST", "subscribe/", {"json": body, "as": "bob"}
    for body in ({}, {"Uid": 5}, {"Uid": ""}, {"uid": "bob"}, {"Uid": "nobody"}, {"Uid": "carol", "x": 1}):
        yield f"wipe_user {body}", "POST", "wipe_user/", {"json": body}
    yield "wipe_user other", "POST", "wipe_user/", {"json": {"Uid": "carol"}, "as": "bob"}
    for body in ({"username": 5, "password": "x"}, {"username": "alice"}, {"username": "a", "password": "b", "c": 1}):
        yield f"login {body}", "POST", "login/", {"json": body, "as": "anonymous"}
    yield "login wrong password", "POST", "login/", {"json": {"username": "alice", "password": "no"}, "as": "anonymous"}
    for since in ("garbage", "2022", "99999999999999999999", "", "2023%00"):
        yield f"oaio_stampz since={since}", "GET", f"oaio_stampz/?since={since}", {}
        yield f"deleted since={since}", "GET", f"hub/deleted/?since={since}", {}
        yield f"changes since={since}", "GET", f"hub/changes/?timeout=0&since={since}", {}
    yield "deleted without since", "GET", "hub/deleted/", {}
    for timeout in ("abc", "-1", "nan", "inf", "1e999"):
        yield f"changes timeout={timeout}", "GET", f"hub/changes/?since={now_stamp()}&timeout={timeout}", {}
    for garbage in ("a%00b", "..", "%2E%2E", "a%2Fb", "x" * 300, "%E2%80%AE", "a%0Ab"):
        yield f"user_subz {garbage[:12]}", "GET", f"user_subz/{garbage}", {}
        yield f"versions {garbage[:12]}", "GET", f"hub/versions/{garbage}", {}
    yield "versions unknown", "GET", "hub/versions/unknown_id", {}
    yield "csh_args NUL", "GET", "csh_args/a%00", {}
    yield "csh_args unknown", "GET", "csh_args/Nowhere", {}
    yield "unknown route", "GET", "no_such_route/", {}
    yield "PUT on register", "PUT", "register/", {"json": good}
    for header in ("alice", "b'\\xff'", "__import__('os')", "b'a' + b'b'", "b'" + "a" * 10_000 + "'", "b'a\\nb'"):
        yield f"X-OAIO-user {header[:16]}", "GET", "oaio_stampz/", {"headers": {"X-OAIO-user": header}}
        yield (
            f"X-OAIO-app {header[:16]} on POST",
            "POST",
            "register/",
            {"json": good, "headers": {"X-OAIO-app": header}},
        )


def test_bad_input_sweep(
    db_url: str,
    hub_factory: Callable[..., Any],
    hub_session: Callable[..., Any],
    db_snapshot: Callable[..., Any],
) -> None:
    hub = hub_factory(db_url=db_url, body_limit=BODY_LIMIT, login_max_failures=1000)
    sessions = {name: hub_session(hub, name) for name in ("alice", "bob")}
    sessions["anonymous"] = hub_session(hub, "carol", login=False)
    alice = sessions["alice"]
    stored = alice.post("register/", json=new_object("alice", text="kept")).json()
    assert alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "r"}).ok
    good = new_object("alice", name="fresh")
    before = db_snapshot(hub)

    failures = []
    verbose = bool(os.environ.get("OAIOD_TEST_VERBOSE"))
    count = 0
    for label, method, route, kwargs in _requests(hub, good, stored):
        count += 1
        session = sessions[kwargs.pop("as", "alice")]
        answer = session.request(method, route, **kwargs)
        try:
            body = answer.json()
            ok = 400 <= answer.status_code < 500 and body["error"] and body["reason"]
        except (ValueError, KeyError, TypeError):
            ok = False
        if verbose:
            print(label, answer.status_code, answer.text[:150])
        if not ok:
            failures.append(f"{label}: {answer.status_code} {answer.text[:200]}")
    assert not failures, "\n".join(failures)
    assert db_snapshot(hub) == before
    assert count > 250

    # the hub is still fine, and accepts the good object
    assert alice.post("register/", json=good).ok
    assert len(alice.get("oaio_stampz/").json()) == 2


def test_oversized_headers_are_refused_without_5xx(hub: HubServer) -> None:
    headers = {**context_encode("alice", "d", "a"), "X-Junk": "j" * 200_000}
    try:
        answer = requests.get(hub.url + "login/", headers=headers, timeout=10)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        return  # h11 answers 400 and resets the connection: a refusal too
    assert 400 <= answer.status_code < 500
