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
