"""A cycle that fails half-way (a full disk, a state database that cannot write) forgets nothing it was told to
look at: found by the randomized runs (issue 10, sim seed 9 with ``disk-full``: a file written just before the disk
filled was never pushed, because the failed index walk had taken its dirty path). The failure is injected into the
index walk here (a full disk cannot be made for one call in-process); tests/sim makes real ones (sim.faultshim)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oaiod.engine import cycle
from tests.engine.conftest import Device, converge, write


def test_dirty_paths_of_a_failed_index_walk_are_walked_again(
    make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "seed.txt", "seed")
    converge(a, b)
    write(a.root / "a" / "b" / "new.txt", "written just before the disk filled")
    real, calls = cycle.index_paths, []

    def full_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(cycle, "index_paths", full_once)
    a.engine.mark_dirty(a.root, ["a"])
    with pytest.raises(OSError):  # the scheduler logs it and backs off (tests/daemon)
        a.engine.sync_cycle()
    assert a.engine.sync_cycle().errors == []  # no rescan asked for: only the dirty path, kept from the failed walk
    b.sync()
    assert (b.root / "a" / "b" / "new.txt").read_text() == "written just before the disk filled"


def test_a_file_that_failed_waits_out_its_backoff_and_a_newer_version_is_tried_at_once(
    make_device: Callable[..., Device], storage_root: Path
) -> None:
    """The pull honours a file's backoff (a download that keeps failing is not fetched every cycle), but a version
    committed after the failure is tried at once. The failure is real: the stored content is gone from the host."""
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "seed.txt", "seed")
    converge(a, b)
    write(a.root / "big.txt", "v1")
    a.sync()
    for stored in storage_root.rglob("big.txt"):
        stored.unlink()
    assert b.sync().errors
    (failed,) = [row for row in b.engine.repo.errors() if row.path == "big.txt"]
    assert failed.kind == "not_found"
    for _ in range(2):
        b.sync()
    (waiting,) = [row for row in b.engine.repo.errors() if row.path == "big.txt"]
    assert waiting.attempts == failed.attempts  # not tried again while backing off
    assert not (b.root / "big.txt").exists()
    write(a.root / "big.txt", "v2")
    a.sync()
    assert b.sync().errors == []
    assert (b.root / "big.txt").read_text() == "v2"
