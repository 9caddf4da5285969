"""HubServer as the daemon embeds it: many starts and stops in one process; the cursor under concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from oaiod.hub.server import HubServer
from oaiod.hub.settings import HubSettings
from tests.hub.objects import new_object

pytestmark = pytest.mark.integration


def test_start_and_stop_many_times(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path / "hub", port=0)
    for _ in range(5):
        with HubServer(settings) as server:
            assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/api/")
            assert server.host == server.url[len("http://") : -len("/api/")]
            assert requests.get(server.url + "login/", timeout=10).ok
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "login/", timeout=10)


def test_since_cursor_misses_nothing_under_concurrent_writers(hub: HubServer, hub_session: Callable[..., Any]) -> None:
    """Deltas read while four users write must add up to the full listing: the cursor never skips a commit."""
    writers = {name: hub_session(hub, name) for name in ("alice", "bob", "carol")}
    reader = hub_session(hub, "alice")
    shared = writers["alice"].post("register/", json=new_object("alice", name="hub")).json()["oaio_id"]
    for name in ("bob", "carol"):
        writers["alice"].post("subscribe/", json={"oaio_id": shared, "username": name, "access_right": "r"})

    def write(name: str) -> None:
        for number in range(12):
            posted = writers[name].post("register/", json=new_object(name, name=f"n{number}")).json()
            if name != "alice":  # alice must see it: give her a right (a change of her view)
                subscription = {"oaio_id": posted["oaio_id"], "username": "alice", "access_right": "r"}
                assert writers[name].post("subscribe/", json=subscription).ok

    threads = [threading.Thread(target=write, args=(name,)) for name in writers]
    for thread in threads:
        thread.start()
    seen: set[str] = set()
    cursor = ""
    while any(thread.is_alive() for thread in threads):
        answer = reader.get("oaio_stampz/", params={"since": cursor} if cursor else None)
        seen |= {o["oaio_id"] for o in answer.json()}
        cursor = answer.headers["X-Oaiod-Sync-Stamp"]
    for thread in threads:
        thread.join()
    answer = reader.get("oaio_stampz/", params={"since": cursor})
    seen |= {o["oaio_id"] for o in answer.json()}
    assert seen == {o["oaio_id"] for o in reader.get("oaio_stampz/").json()}
    assert len(seen) == 1 + 3 * 12
