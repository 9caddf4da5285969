"""Two devices of one user that start at once both register a client root object (design §1): the newer one is
merged into the older one and deleted, and every device ends up on the older one with every file.

The race is forced with :class:`Paused`, a thin wrapper around each engine's real server API (a real hub over
loopback; nothing is mocked): it holds a device after its first listing, or before its first registration, until
the test lets it go.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from oaiod.daemon.ctl import present
from oaiod.engine.context import ServerApi
from oaiod.engine.settings import ROOT_OBJECT_NAME
from oaiod.model import OaiObject
from tests.engine.conftest import Device, converge, write

pytestmark = pytest.mark.integration

WAIT = 60.0


class Paused:
    """The real API of a device, with its first ``stampz`` or ``register`` held at ``gate`` (then it passes); every
    call passes through ``__getattr__``, so the engine gets it as a :class:`ServerApi` by a cast."""

    def __init__(self, api: Any, method: str, gate: threading.Barrier | threading.Event) -> None:
        self._api, self._method, self._gate = api, method, gate
        self.reached = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if name != self._method or self.reached.is_set():
            return attribute

        def held(*args: Any, **kwargs: Any) -> Any:
            if self._method == "register":  # hold before: the object is made, not registered yet
                self.reached.set()
                self._wait()
                return attribute(*args, **kwargs)
            answer = attribute(*args, **kwargs)  # stampz: hold after listing
            self.reached.set()
            self._wait()
            return answer

        return held

    def _wait(self) -> None:
        if isinstance(self._gate, threading.Barrier):
            self._gate.wait(WAIT)
        else:
            assert self._gate.wait(WAIT)


def _paused(device: Device, method: str, gate: threading.Barrier | threading.Event) -> Paused:
    wrapper = Paused(device.api, method, gate)
    device.engine.api = device.engine.ctx.api = cast(ServerApi, wrapper)
    return wrapper


def _unpause(*devices: Device) -> None:
    for device in devices:
        device.engine.api = device.engine.ctx.api = device.api


def _in_thread(device: Device) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(device.sync())
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name=f"sync-{device.name}")
    thread.start()
    return thread, outcome


def _server_roots(device: Device) -> list[OaiObject]:
    return [o for o in device.api.stampz(None).objects if o.client_values.get("_name") == ROOT_OBJECT_NAME]


def _root_of(device: Device) -> str:
    (root,) = [row.oaio_id for row in device.engine.repo.objects() if row.kind == "root"]
    return root


def _race(a: Device, b: Device) -> str:
    """Both devices list before either registers; both register a root. Returns the older root's id."""
    both_listed = threading.Barrier(2)
    _paused(a, "stampz", both_listed)
    _paused(b, "stampz", both_listed)
    runs = [_in_thread(a), _in_thread(b)]
    for thread, outcome in runs:
        thread.join(WAIT)
        assert not thread.is_alive() and outcome and not isinstance(outcome[0], BaseException), outcome
    _unpause(a, b)
    registered = _server_roots(a)
    assert len(registered) == 2  # both listed before either registered: the race happened
    return min(registered, key=lambda o: (a.api.origin(o.oaio_id).registered, o.oaio_id)).oaio_id  # the hub's age


def test_simultaneous_registrations_merge_into_the_older_root(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "only-a.txt", "from a")
    write(b.root / "only-b.txt", "from b")
    write(a.root / "same.txt", "same name, a's content")
    write(b.root / "same.txt", "same name, b's content")
    write(a.root / "both.txt", "identical on both")
    write(b.root / "both.txt", "identical on both")
    older = _race(a, b)

    converge(a, b, rounds=3)
    assert [o.oaio_id for o in _server_roots(a)] == [older]
    assert _root_of(a) == _root_of(b) == older
    assert a.tree() == b.tree()
    files = a.tree()
    assert files["only-a.txt"] == b"from a" and files["only-b.txt"] == b"from b"
    assert files["both.txt"] == b"identical on both"
    copies = [path for path in files if path.startswith("same (conflicted copy from ")]
    assert len(copies) == 1 and len(files) == 5  # nothing lost, nothing doubled
    assert sorted([files["same.txt"], files[copies[0]]]) == [b"same name, a's content", b"same name, b's content"]
    for device in (a, b):  # settled: nothing left to do
        report = device.sync()
        assert (report.uploads, report.downloads, report.pushed, report.errors) == (0, 0, 0, [])


def test_the_hub_clock_decides_which_root_is_older_not_the_id(make_device) -> None:
    """a mints its root object first (the older id stamp) but registers it last; b registers one meanwhile and c
    adopts b's. The hub attests b's registration as the older one, so a merges into b's and deletes its own, and
    b and c never switch: an id's stamp is whatever a client wrote there."""
    a, b, c = make_device("alice", "a"), make_device("alice", "b"), make_device("alice", "c")
    write(a.root / "a.txt", "a")
    write(b.root / "b.txt", "b")
    write(c.root / "c.txt", "c")
    release_a = threading.Event()
    held = _paused(a, "register", release_a)
    thread, outcome = _in_thread(a)
    assert held.reached.wait(WAIT)  # a made its root object (older id stamp) and waits to register it
    converge(b, c)  # b registers its root, c adopts it
    first = _root_of(b)
    assert _root_of(c) == first and c.tree() == b.tree() == {"b.txt": b"b", "c.txt": b"c"}
    release_a.set()
    thread.join(WAIT)
    assert not thread.is_alive() and outcome and not isinstance(outcome[0], BaseException), outcome
    _unpause(a)
    late = _root_of(a)
    assert late[-20:] < first[-20:]  # by the ids, a's would be the older one

    converge(a, b, c, rounds=3)
    assert [o.oaio_id for o in _server_roots(a)] == [first]
    assert _root_of(a) == _root_of(b) == _root_of(c) == first
    assert a.tree() == b.tree() == c.tree() == {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"}
    history = [(h["action"], h["oaio_id"]) for h in present.rows(a.engine.history())]
    assert ("drop-root", late) in history  # a registered the later root and deleted it
    assert all(
        h["action"] not in ("drop-root", "switch-root") for d in (b, c) for h in present.rows(d.engine.history())
    )


def test_a_root_deleted_on_the_server_is_replaced_without_losing_files(make_device) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "x.txt", "x")
    write(b.root / "y.txt", "y")
    converge(a, b)
    gone = _root_of(a)
    a.api.delete(gone)  # by hand (another client, an admin): both devices find a new root and keep their files
    converge(a, b, rounds=3)
    (root,) = _server_roots(a)
    assert root.oaio_id != gone and _root_of(a) == _root_of(b) == root.oaio_id
    assert a.tree() == b.tree() == {"x.txt": b"x", "y.txt": b"y"}


def test_a_lost_race_forgotten_by_rebuild_index_is_still_cleaned_up(make_device) -> None:
    """The device with the newer root rebuilds its index before it merged: it adopts the older root like a new
    device and still deletes the root it registered (it recognises its own id)."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "a.txt", "a")
    write(b.root / "b.txt", "b")
    older = _race(a, b)
    newer = _root_of(b if _root_of(a) == older else a)
    loser = b if _root_of(b) == newer else a
    loser.engine.rebuild_index()
    converge(a, b, rounds=3)
    assert [o.oaio_id for o in _server_roots(a)] == [older]
    assert a.tree() == b.tree() == {"a.txt": b"a", "b.txt": b"b"}
