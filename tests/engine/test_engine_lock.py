"""Design §7: what holds the engine's one lock. A call that changes the engine's state waits for a running cycle
(``confirm_delete`` reset the sync cursor under a cycle that then set it again, so the held pull was not listed
again); reads of the state database and server calls answer while a cycle runs (design §6: ``ctl`` must not hang).

A real engine against a real hub; the cycle is held inside its first server call by a gate in front of the real
server API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oaiod.engine.cycle import SyncEngine
from oaiod.server_api import OaioServerApi, StampzResult
from oaiod.state import StateRepo
from oaiod.storage import open_backend
from tests.engine.conftest import Device, write

pytestmark = pytest.mark.integration


class GatedApi:
    """The real server API, except that ``stampz`` waits for the test to open the gate once it was entered."""

    def __init__(self, api: OaioServerApi) -> None:
        self.api = api
        self.entered, self.gate = threading.Event(), threading.Event()

    def stampz(self, since: str | None = None) -> StampzResult:
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.api.stampz(since)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


def _in_thread(call: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_confirm_delete_waits_for_the_cycle_and_reads_answer_during_it(
    make_device: Callable[..., Device], tmp_path: Path
) -> None:
    alice = make_device("alice", "a")
    write(alice.root / "a.txt", "a")
    assert alice.sync().errors == []
    (root,) = [row.oaio_id for row in alice.engine.repo.objects() if row.kind == "root"]
    alice.engine.close()
    alice.engine.repo.close()
    api = GatedApi(alice.api)
    engine = SyncEngine(alice.engine.settings, StateRepo(alice.engine.settings.state_dir), api, open_backend)
    try:
        cycle = _in_thread(engine.sync_cycle)
        assert api.entered.wait(30)
        reads: list[Callable[[], Any]] = [engine.status, engine.objects, engine.roots, engine.conflicts, engine.history]
        reads += [lambda: engine.versions(root), lambda: engine.users(root)]  # server calls
        reader = _in_thread(lambda: [read() for read in reads])
        reader.join(30)
        assert not reader.is_alive(), "a read waited for the cycle"
        confirm = _in_thread(lambda: engine.confirm_delete(root))
        confirm.join(0.5)
        assert confirm.is_alive(), "confirm_delete ran beside the cycle"
        api.gate.set()
        cycle.join(60)
        confirm.join(60)
        assert not cycle.is_alive() and not confirm.is_alive()
        assert engine.repo.cursor(engine.server_key) == ""  # its reset came after the cycle's, so it stands
    finally:
        api.gate.set()
        engine.close()
        engine.repo.close()
