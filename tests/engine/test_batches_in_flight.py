"""Several ``put_many``/``get_many`` batches in flight at once (``context.in_flight``, design §3 and §4).

The helper alone (order, bound, a failure in its turn, nothing left running), then engines against a real hub over
loopback with Hub storage (the daemon's wiring: the backend shares the API session, through the usual wrappers).
Faults are injected at the storage boundary by :class:`HookedBackend` (every call passed on to the real backend);
batches are made small so a few dozen files take several batches, of which several run at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oaiod.engine import context
from oaiod.engine.context import in_flight
from oaiod.storage.base import Transfer, Transferred
from oaiod.storage.errors import PermanentStorageError
from oaiod.storage.hub import HubBackend
from oaiod.storage.wrappers import WrapperConfig, wrap_backend
from tests.engine.conftest import Device, converge
from tests.engine.test_bulk_transfer import HookedBackend, many

# -- the helper ---------------------------------------------------------------------------------------------------


class Recorder:
    """A batch function that records how many calls ran at once; ``fail`` names a batch that raises."""

    def __init__(self, fail: int | None = None) -> None:
        self.fail = fail
        self.running = self.most = 0
        self.started: list[int] = []
        self.ended: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, batch: int) -> int:
        with self._lock:
            self.started.append(batch)
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.02)  # long enough for the next batches to start meanwhile
            if batch == self.fail:
                raise PermanentStorageError(f"batch {batch} failed")
            return batch * 10
        finally:
            with self._lock:
                self.running -= 1
                self.ended.append(batch)


def test_results_come_in_order_with_at_most_limit_running() -> None:
    taken: list[int] = []

    def source() -> Iterator[int]:
        for batch in range(10):
            taken.append(batch)
            yield batch

    work = Recorder()
    seen = []
    for batch, result in in_flight(source(), work, 3):
        assert len(taken) <= batch + 3  # bounded: a batch is taken only when a slot is free
        seen.append((batch, result))
    assert seen == [(batch, batch * 10) for batch in range(10)]
    assert 2 <= work.most <= 3


def test_a_limit_of_one_runs_each_batch_in_the_calling_thread() -> None:
    threads: list[threading.Thread] = []
    results = list(in_flight(range(4), lambda batch: threads.append(threading.current_thread()) or batch, 1))
    assert results == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert threads == [threading.current_thread()] * 4


def test_a_failed_batch_raises_in_its_turn_and_nothing_outlives_the_caller() -> None:
    """The batches before the failed one are handed over; the failure is raised when its turn comes; closing the
    iterator waits for the batches still running and never starts the others."""
    work = Recorder(fail=2)
    handed: list[int] = []
    flights = in_flight(range(20), work, 3)
    with pytest.raises(PermanentStorageError, match="batch 2"), contextlib.closing(flights):
        for batch, _result in flights:
            handed.append(batch)
    assert handed == [0, 1]
    assert work.running == 0 and sorted(work.started) == sorted(work.ended)  # every started call ended
    assert len(work.started) < 20  # the rest never started


# -- engines through a real hub -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "TRANSFER_BATCH_FILES", 5)


def hooked_device(hub_device: Callable[..., Any], user: str, name: str) -> tuple[Device, HookedBackend]:
    """A device on Hub storage (one attempt per call) and the :class:`HookedBackend` its engine uses."""
    hooked: list[HookedBackend] = []

    def wrap(backend: HubBackend) -> HookedBackend:
        hooked.append(HookedBackend(wrap_backend(backend, WrapperConfig(attempts=1))))
        return hooked[-1]

    device, _opened = hub_device(user, name, wrap)
    device.engine.ctx.backend("Hub")
    return device, hooked[0]


class Overlap:
    """A hook that records how many batch calls ran at once (each held a moment), and fails one chosen call."""

    def __init__(self, fail_call: int | None = None) -> None:
        self.fail_call = fail_call
        self.calls = self.running = self.most = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, items: list[Transfer], _results: list[Transferred] | None) -> None:
        with self._lock:
            self.calls += 1
            number = self.calls
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            if number == self.fail_call:
                self.failed = [item.key.split("/", 2)[2] for item in items]  # <oaio_id>/<stamp>/<path>
                raise PermanentStorageError("the test's fault in one batch in flight")
        finally:
            with self._lock:
                self.running -= 1


def _synced(device: Device) -> set[str]:
    return {row.path for row in device.engine.repo.iter_files(_object(device)) if row.synced_sha256}


def _object(device: Device) -> str:
    (row,) = [row for row in device.engine.repo.objects() if row.local_root]
    return row.oaio_id


def test_downloads_run_in_flight_and_a_failed_batch_loses_or_doubles_nothing(hub_device) -> None:
    """40 files in batches of 5 through a real hub: several ``get_many`` calls run at once. One of them fails
    after writing its files: they are discarded (no temp file left) and only they are missing, with no index row
    claiming them; every other file is installed once, with its row. The next cycle brings the rest."""
    a, _ = hooked_device(hub_device, "alice", "a")
    b, hooked_b = hooked_device(hub_device, "alice", "b")
    converge(a, b)
    made = many(a.root, 40)
    a.sync()
    overlap = Overlap(fail_call=3)
    hooked_b.on_get = overlap
    report = b.sync()
    assert overlap.most >= 2  # batches really were in flight together
    assert len(overlap.failed) == 5 and report.downloads == 35 and report.errors
    assert not [path for path in b.root.rglob(".oaiod-tmp-*")]
    for rel, data in made.items():
        if rel in overlap.failed:
            assert not (b.root / rel).exists(), rel
        else:
            assert (b.root / rel).read_bytes() == data, rel
    assert _synced(b) & set(made) == set(made) - set(overlap.failed)  # rows only for what was installed
    hooked_b.on_get = None
    b.engine.retry_failed()
    report = b.sync()
    assert report.errors == [] and report.downloads == 5
    assert b.tree() == a.tree()


def test_uploads_run_in_flight_and_a_failed_batch_commits_nothing(hub_device) -> None:
    """A failed ``put_many`` among several in flight: no version is committed (the server keeps the old one, the
    index claims nothing); the next cycle commits every file exactly once and the other device gets them all."""
    a, hooked_a = hooked_device(hub_device, "alice", "a")
    b, _ = hooked_device(hub_device, "alice", "b")
    converge(a, b)
    before = a.engine.repo.objects()[0].client_stamp
    made = many(a.root, 40)
    overlap = Overlap(fail_call=2)
    hooked_a.on_put = overlap
    a.engine.rescan()
    report = a.engine.sync_cycle()
    assert report.pushed == 0 and report.errors and overlap.most >= 2
    assert [row.client_stamp for row in a.engine.repo.objects()] == [before]
    assert not _synced(a) & set(made)  # nothing claimed as synced
    hooked_a.on_put = None
    a.engine.retry_failed()
    report = a.sync()
    assert report.errors == [] and report.pushed == 1 and report.uploads == 40
    assert hooked_a.put_calls[-8:] == [5] * 8  # the commit's 40 files, each sent once
    converge(a, b)
    assert b.tree() == a.tree() and {rel: b.tree()[rel] for rel in made} == made
