"""A folder the user moves while a download into it is in flight leaves no temp file behind (sim seed 1002).

The temp file of a download is written beside its target; when the folder moves before the rename, the temp file
moves with it and the batch's cleanup no longer finds it. The user's move is injected at the one moment it
matters, between the batch's downloads and their installation (a wrapper around ``localfs.make_durable``, which
runs exactly then): a real race cannot be timed from a test.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from oaiod.engine import localfs
from oaiod.engine.ignore import TEMP_PREFIX
from tests.engine.conftest import converge, write

pytestmark = pytest.mark.integration


def _temps(root: Path) -> list[str]:
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in files + dirs if n.startswith(TEMP_PREFIX)]


def _move_at_install(monkeypatch: pytest.MonkeyPatch, source: Path, target: Path) -> None:
    real = localfs.make_durable
    done: list[bool] = []

    def moving(root: Any, paths: Any) -> None:
        if not done and any(TEMP_PREFIX in str(p) for p in paths):
            done.append(True)
            shutil.move(source, target)  # the user's move, while the downloads wait to be installed
        real(root, paths)

    monkeypatch.setattr(localfs, "make_durable", moving)


@pytest.mark.parametrize("into", ["inside", "outside"])
def test_a_folder_moved_during_a_download_into_it_keeps_no_temp_file(make_device, monkeypatch, into: str) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "docs" / "f.txt", "v1")
    write(a.root / "docs" / "g.txt", "g")
    converge(a, b)
    write(a.root / "docs" / "f.txt", "v2 from a")
    write(a.root / "docs" / "new.txt", "new from a")
    converge(a)
    moved = b.root / "renamed" if into == "inside" else b.home / "elsewhere"
    _move_at_install(monkeypatch, b.root / "docs", moved)
    b.sync()
    monkeypatch.undo()
    assert _temps(b.root) == [] and _temps(moved) == []
    converge(a, b, rounds=3)
    assert a.tree() == b.tree()
    assert _temps(b.root) == []
    if into == "inside":  # design §8: a rename against an edit keeps both, the old content at the new name
        assert a.tree()["renamed/f.txt"] == b"v1" and a.tree()["docs/f.txt"] == b"v2 from a"


def test_sweep_spares_recent_temp_files(tmp_path) -> None:
    """The sweep's cut-off: a temp file changed after it (a download of another cycle in flight) stays."""
    old, new = tmp_path / f"{TEMP_PREFIX}old", tmp_path / "sub" / f"{TEMP_PREFIX}new"
    write(old, "x")
    cutoff = os.lstat(old).st_ctime + 0.001
    new.parent.mkdir()
    time.sleep(0.05)  # ctime ticks are coarse on some file systems
    new.write_text("y")
    if os.lstat(new).st_ctime <= cutoff:
        pytest.skip("the file system's ctime granularity cannot tell the two apart")
    assert localfs.sweep_temp_files([tmp_path], cutoff) == 1
    assert not old.exists() and new.exists()
