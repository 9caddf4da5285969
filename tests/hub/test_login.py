"""``POST login/`` under attack, over real HTTP: malformed credentials, password guessing, forged proxy headers.

The hub runs on every database (``hub`` is parametrized over SQLite and PostgreSQL in ``tests/hub/conftest``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oaiod.http import HttpClient, OaioSessionAuth, RetryPolicy
from oaiod.hub.loginguard import SECRET_FILE_NAME, DeviceTokens, FailureCounter
from oaiod.hub.server import HubServer
from oaiod.hub.service import HubService
from oaiod.hub.settings import HubSettings
from oaiod.secrets import Secret

pytestmark = pytest.mark.integration

BAD_CREDENTIALS = [  # raw JSON text: lone surrogates cannot be sent any other way
    '{"username": "\\ud800", "password": "x"}',
    '{"username": "bob\\udfff", "password": "x"}',
    '{"username": "bob", "password": "\\ud800"}',
    '{"username": "bob", "password": "pw\\udc00pw"}',
    '{"username": "bo\\u0000b", "password": "x"}',
    '{"username": "\\u0000", "password": "\\u0000"}',
    '{"username": "bob\\n", "password": "x"}',
    '{"username": "", "password": "x"}',
    '{"username": "bob", "password": 5}',
]


def test_malformed_credentials_are_400_not_5xx(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    anonymous = hub_session(hub, "bob", login=False)
    for body in BAD_CREDENTIALS:
        answer = anonymous.post("login/", data=body.encode(), headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"] == "validation" and answer.json()["reason"], body
    # nothing of that counted as a guess, and the real password still works
    assert anonymous.login(hub.users["bob"]).ok  # type: ignore[attr-defined]


def _cookie_attributes(answer: Any, name: str) -> str:
    """The ``Set-Cookie`` header that sets ``name``, lower-cased."""
    headers = answer.raw.headers.getlist("Set-Cookie")
    matching = [header.lower() for header in headers if header.startswith(f"{name}=")]
    assert matching, (name, headers)
    return matching[0]


def _login(session: Any, username: str, password: str, headers: dict[str, str] | None = None) -> Any:
    return session.post("login/", json={"username": username, "password": password}, headers=headers or {})


def test_forwarded_headers_count_only_from_a_trusted_proxy(
    hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]
) -> None:
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    plain = hub_factory()
    bob = hub_session(plain, "bob", login=False)
    answer = _login(bob, "bob", plain.users["bob"], forged)  # type: ignore[attr-defined]
    assert answer.status_code == 200
    assert "secure" not in _cookie_attributes(answer, "sessionid")
    assert bob.get("csh_args/Hub", headers=forged).json() == {"url": plain.url}

    proxied = hub_factory(trusted_proxies=("127.0.0.1",))
    first = hub_session(proxied, "carol", login=False).get("login/", headers=forged)
    assert "; secure" in _cookie_attributes(first, "csrftoken")
    carol = hub_session(proxied, "carol")  # over plain http: its cookies are not Secure, so requests sends them
    answer = _login(carol, "carol", proxied.users["carol"], forged)  # type: ignore[attr-defined]
    assert answer.status_code == 200
    assert "; secure" in _cookie_attributes(answer, "sessionid")
    answer = _login(carol, "carol", proxied.users["carol"], {"X-Forwarded-Proto": "http"})  # type: ignore[attr-defined]
    assert "secure" not in _cookie_attributes(answer, "sessionid")  # the proxy said http: the hub does not guess
    assert carol.get("csh_args/Hub", headers=forged).json()["url"].startswith("https://")


# -- throttling: a guesser is slowed, the owner gets in -----------------------------------------------------------

LIMITS = {"login_max_failures": 3, "login_address_max_failures": 5, "login_name_max_failures": 6}


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}  # the hub trusts 127.0.0.1 as its proxy in these tests


def _guess(session: Any, username: str, address: str) -> int:
    return _login(session, username, "wrong guess", _from(address)).status_code


@pytest.fixture
def proxied(hub_factory: Callable[..., HubServer]) -> HubServer:
    """A hub behind a "proxy" on 127.0.0.1 (so tests choose client addresses), with small login limits."""
    return hub_factory(trusted_proxies=("127.0.0.1",), **LIMITS)


def test_a_guesser_locks_only_its_own_name_and_address_pair(
    proxied: HubServer, hub_session: Callable[..., Any]
) -> None:
    attacker = hub_session(proxied, "carol", login=False)
    assert [_guess(attacker, "carol", "203.0.113.1") for _ in range(4)] == [401, 401, 401, 429]
    refused = _login(attacker, "carol", proxied.users["carol"], _from("203.0.113.1"))  # type: ignore[attr-defined]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"] == "rate_limited" and refused.json()["reason"]
    # carol from anywhere else, even a device she never used, gets in
    carol = hub_session(proxied, "carol", login=False)
    assert _login(carol, "carol", proxied.users["carol"], _from("198.51.100.2")).status_code == 200  # type: ignore[attr-defined]
    # and so does bob from the guesser's own address (a shared NAT)
    bob = hub_session(proxied, "bob", login=False)
    assert _login(bob, "bob", proxied.users["bob"], _from("203.0.113.1")).status_code == 200  # type: ignore[attr-defined]


def test_a_known_device_gets_in_while_its_name_and_address_are_throttled(
    proxied: HubServer, hub_session: Callable[..., Any]
) -> None:
    owner = hub_session(proxied, "carol", login=False)
    first = _login(owner, "carol", proxied.users["carol"], _from("198.51.100.2"))  # type: ignore[attr-defined]
    assert "httponly" in _cookie_attributes(first, "oaiod_device") and owner.cookies.get("oaiod_device")
    # guessers from many addresses fill carol's per-name limit, one of them also its address's limit
    attacker = hub_session(proxied, "carol", login=False)
    assert [_guess(attacker, "carol", f"203.0.113.{n}") for n in range(1, 7)] == [401] * 6
    for name in ("alice", "bob", "nobody", "zed", "yves"):
        assert _guess(attacker, name, "198.51.100.2") == 401  # the owner's own address: 5 failures there now
    assert _guess(attacker, "carol", "192.0.2.99") == 429  # a new client at carol's name: the per-name limit
    assert _guess(attacker, "bob", "198.51.100.2") == 429  # a new client at that address: the per-address limit
    stranger = hub_session(proxied, "carol", login=False)
    assert _login(stranger, "carol", proxied.users["carol"], _from("192.0.2.99")).status_code == 429  # type: ignore[attr-defined]
    # the owner's device is denied by nothing of that, from its usual address or any other
    for address in ("198.51.100.2", "192.0.2.99"):
        answer = _login(owner, "carol", proxied.users["carol"], _from(address))  # type: ignore[attr-defined]
        assert answer.status_code == 200, answer.text
    assert owner.get("current_stamp/").ok
    # a device token names its user: carol's does not let her client past the limits for bob's name
    assert _login(owner, "bob", proxied.users["bob"], _from("198.51.100.2")).status_code == 429  # type: ignore[attr-defined]


def test_a_known_device_is_limited_by_its_own_failures(proxied: HubServer, hub_session: Callable[..., Any]) -> None:
    owner = hub_session(proxied, "bob", login=False)
    assert _login(owner, "bob", proxied.users["bob"], _from("198.51.100.3")).status_code == 200  # type: ignore[attr-defined]
    assert [_guess(owner, "bob", "198.51.100.3") for _ in range(4)] == [401, 401, 401, 429]
    # a forged or foreign token counts as none
    forger = hub_session(proxied, "bob", login=False)
    forger.cookies.set("oaiod_device", owner.cookies["oaiod_device"][:-2] + "xx")
    assert _login(forger, "bob", proxied.users["bob"], _from("192.0.2.5")).status_code == 200  # type: ignore[attr-defined]


def test_rotating_x_forwarded_for_without_a_trusted_proxy_does_not_dodge_the_address_limit(
    hub_factory: Callable[..., HubServer], hub_session: Callable[..., Any]
) -> None:
    hub = hub_factory(**LIMITS)
    attacker = hub_session(hub, "bob", login=False)
    codes = [_guess(attacker, name, f"203.0.113.{n}") for n, name in enumerate(["n1", "n2", "n3", "n4", "n5", "n6"])]
    assert codes == [401] * 5 + [429]


def test_a_daemon_keeps_its_device_token_when_it_logs_in_again(
    proxied: HubServer, hub_session: Callable[..., Any]
) -> None:
    auth = OaioSessionAuth("bob", Secret(proxied.users["bob"]))  # type: ignore[attr-defined]
    with HttpClient(proxied.url, auth=auth, retry=RetryPolicy(max_attempts=1), timeout=(5.0, 10.0)) as client:
        assert client.get_json("current_stamp/")
        attacker = hub_session(proxied, "bob", login=False)
        assert [_guess(attacker, "bob", f"203.0.113.{n}") for n in range(1, 8)] == [401] * 6 + [429]
        auth.authenticate(client)  # a new login, as after the session expired: the device token comes along
        assert client.get_json("current_stamp/")


def test_lockouts_of_one_key_double_up_to_the_most() -> None:
    counter = FailureCounter(limit=2, window=10.0, lockout_max=35.0)
    now = 1000.0
    lockouts = []
    for _ in range(4):
        counter.failed("k", now)
        counter.failed("k", now)
        lockouts.append(counter.locked_for("k", now))
        assert counter.locked_for("other", now) == 0
        now += lockouts[-1]
    assert lockouts == [10.0, 20.0, 35.0, 35.0]
    counter.failed("k", now)
    counter.failed("k", now + 11)  # the first of them has left the window
    assert counter.locked_for("k", now + 11) == 0
    counter.forget_quiet(now + 11 + 36)
    assert counter.locked_for("k", now + 11) == 0 and not counter._records


def test_device_tokens_are_signed_per_user_and_expire(tmp_path: Path) -> None:
    service = HubService.open(HubSettings(data_dir=tmp_path))
    try:
        tokens = DeviceTokens.shared(service.sessions, tmp_path, lifetime=3600)
        assert not (tmp_path / SECRET_FILE_NAME).exists()  # the secret is in the database, for every hub process
        token = tokens.issue("bob")
        device = tokens.device(token, "bob")
        assert device and tokens.device(tokens.issue("bob", device), "bob") == device
        assert tokens.device(token, "alice") == "" and tokens.device(token + "x", "bob") == ""
        assert tokens.device("a.b.c", "bob") == "" and tokens.device("", "bob") == ""
        assert DeviceTokens.shared(service.sessions, tmp_path, lifetime=3600).device(token, "bob") == device  # kept
        assert DeviceTokens.shared(service.sessions, tmp_path, lifetime=-1).device(token, "bob") == ""
        assert DeviceTokens(b"another secret" * 3, 3600).device(token, "bob") == ""
    finally:
        service.close()


def test_an_older_hubs_device_key_file_stays_the_secret(tmp_path: Path) -> None:
    """Device tokens issued by a hub that kept its secret in ``login-device.key`` stay valid after the upgrade."""
    legacy = secrets.token_bytes(32)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / SECRET_FILE_NAME).write_bytes(legacy)
    token = DeviceTokens(legacy, 3600).issue("bob")
    service = HubService.open(HubSettings(data_dir=tmp_path))
    try:
        assert DeviceTokens.shared(service.sessions, tmp_path, lifetime=3600).device(token, "bob")
    finally:
        service.close()
