"""What one request may cost the hub in memory (issue 9 §4): a real hub over loopback refuses a body of too many
JSON values (413) or an object listing too many files (400), and handles at most ``LARGE_BODY_SLOTS`` large bodies
at once: the next waits, then gets 429 with ``Retry-After``. ``bench/hub_memory_bench.py`` measures the memory."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oaiod.hub import app as hub_app
from oaiod.hub import deps as hub_deps
from oaiod.hub.server import HubServer
from oaiod.model import MAX_FILE_PATHS
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration


def test_a_body_of_too_many_json_values_is_refused_before_parsing(
    hub: HubServer, sessions: dict[str, Any], db_snapshot: Callable[..., Any]
) -> None:
    before = db_snapshot(hub)
    obj = new_object("alice", "junk")
    obj["client_values"]["junk"] = [0] * hub_deps.MAX_JSON_VALUES
    answer = sessions["alice"].post("register/", json=obj)
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    assert f"more than {hub_deps.MAX_JSON_VALUES} JSON values" in answer.json()["reason"]
    assert db_snapshot(hub) == before


def test_an_object_listing_too_many_files_is_refused(hub: HubServer, sessions: dict[str, Any]) -> None:
    obj = new_object("alice", "many")
    obj["client_values"]["_file_paths"] = [f"d/f{number}" for number in range(MAX_FILE_PATHS + 1)]
    answer = sessions["alice"].post("register/", json=obj)
    assert answer.status_code == 400 and f"more than {MAX_FILE_PATHS} files" in answer.json()["reason"]
    obj["client_values"]["_file_paths"] = obj["client_values"]["_file_paths"][:100_000]  # a real big folder fits
    assert sessions["alice"].post("register/", json=obj).status_code == 200


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(hub_app, "LARGE_BODY_WAIT", 1.0)
    yield


def stalled_body(hub: HubServer, size: int) -> socket.socket:
    """A POST that announces ``size`` bytes and sends a few: it holds a large-body slot while the hub reads."""
    host, port = hub.host.rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=10)
    head = f"POST /api/register/ HTTP/1.1\r\nHost: {hub.host}\r\nContent-Type: application/json\r\n"
    conn.sendall(f"{head}Content-Length: {size}\r\n\r\n".encode() + b'{"oaio_id": ')
    return conn


def test_large_bodies_beyond_the_slots_wait_then_get_429(
    short_wait: None, hub: HubServer, sessions: dict[str, Any]
) -> None:
    padding = "x" * (2 * hub_app.LARGE_BODY)
    stalled = [stalled_body(hub, 3 * hub_app.LARGE_BODY) for _ in range(hub_app.LARGE_BODY_SLOTS)]
    try:
        time.sleep(0.5)  # the hub took their slots
        started = time.monotonic()
        busy = sessions["bob"].post("register/", json=new_object("bob", "big", padding=padding))
        assert busy.status_code == 429 and busy.json()["error"] == "rate_limited", busy.text
        assert busy.headers["Retry-After"] == "5" and time.monotonic() - started >= 1.0
        small = sessions["bob"].post("register/", json=new_object("bob", "small"))
        assert small.status_code == 200  # a small body takes no slot
    finally:
        for conn in stalled:
            conn.close()
    time.sleep(0.5)  # the hub saw them go and freed their slots
    assert sessions["alice"].post("register/", json=new_object("alice", "big", padding=padding)).status_code == 200
