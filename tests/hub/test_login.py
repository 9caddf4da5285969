"""``POST login/`` under attack, over real HTTP: malformed credentials, password guessing, forged proxy headers.

The hub runs on every database (``hub`` is parametrized over SQLite and PostgreSQL in ``tests/hub/conftest``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oaiod.hub.server import HubServer

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
