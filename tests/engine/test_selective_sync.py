"""Selective sync (issue 14 §4): a folder excluded on one device is not downloaded there, its local copies go to
the trash (a file changed here stays), nothing is deleted on the server or the other devices, the server's changes
there move on without this device, and it comes back when included again. This device's own ignore patterns
(``[sync] ignore_patterns``) no longer download either."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from engine.conftest import Device, converge, tree, write

from oaiod.engine.context import EngineError


def trash_contents(root: Path) -> set[bytes]:
    return {path.read_bytes() for path in (root / ".oaiod" / "trash").rglob("*") if path.is_file()}


def test_an_excluded_folder_stays_everywhere_else_and_comes_back(make_device: Callable[..., Device]) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "photos" / "2019" / "p1.jpg", "one")
    write(a.root / "photos" / "2019" / "deep" / "p2.jpg", "two")
    write(a.root / "photos" / "2020.jpg", "keep")
    write(a.root / "notes.txt", "n")
    converge(a, b)
    assert b.engine.exclude(b.root / "photos" / "2019", dry_run=True).trashed == [
        "photos/2019/deep/p2.jpg",
        "photos/2019/p1.jpg",
    ]
    outcome = b.engine.exclude(b.root / "photos" / "2019")
    assert sorted(outcome.trashed) == ["photos/2019/deep/p2.jpg", "photos/2019/p1.jpg"] and outcome.size == 6
    assert not (b.root / "photos" / "2019").exists()
    assert {b"one", b"two"} <= trash_contents(b.root)
    converge(a, b)
    assert (a.root / "photos" / "2019" / "p1.jpg").read_text() == "one"  # not deleted anywhere else
    # the server's changes there move on without this device: nothing downloaded, nothing pushed back
    write(a.root / "photos" / "2019" / "p1.jpg", "one, edited")
    write(a.root / "photos" / "2019" / "p3.jpg", "three")
    (a.root / "photos" / "2019" / "deep" / "p2.jpg").unlink()
    write(b.root / "notes.txt", "n, edited on b")
    converge(a, b)
    assert not (b.root / "photos" / "2019").exists()
    assert tree(a.root)["notes.txt"] == b"n, edited on b"
    assert {p for p in tree(a.root) if p.startswith("photos/2019/")} == {"photos/2019/p1.jpg", "photos/2019/p3.jpg"}
    assert b.engine.exclusions() == [(str(b.root), "photos/2019")]
    # included again: the server's files of now come back
    assert b.engine.include(b.root / "photos" / "2019") == ["photos/2019/p1.jpg", "photos/2019/p3.jpg"]
    converge(a, b)
    assert tree(b.root) == tree(a.root)
    assert (a.root / "photos" / "2019" / "deep").is_dir() and (b.root / "photos" / "2019" / "deep").is_dir()
    assert b.engine.exclusions() == []


def test_a_file_changed_here_before_the_exclusion_is_kept_on_disk(make_device: Callable[..., Device]) -> None:
    a, b = make_device("alice", "a"), make_device("alice", "b")
    write(a.root / "big" / "f.bin", "synced")
    write(a.root / "big" / "g.bin", "synced too")
    converge(a, b)
    write(b.root / "big" / "f.bin", "edited here, never committed")
    b.engine.rescan()
    outcome = b.engine.exclude(b.root / "big")
    assert outcome.trashed == ["big/g.bin"] and outcome.kept == ["big/f.bin"]
    assert (b.root / "big" / "f.bin").read_text() == "edited here, never committed"
    converge(a, b)
    assert (a.root / "big" / "f.bin").read_text() == "synced"  # not pushed: the folder is not synced here


def test_this_devices_ignore_patterns_no_longer_download(make_device: Callable[..., Device]) -> None:
    a = make_device("alice", "a")
    b = make_device("alice", "b", ignore_patterns=("*.iso", "cache/"))
    write(a.root / "disk.iso", "huge")
    write(a.root / "cache" / "c.dat", "cached")
    write(a.root / "doc.txt", "doc")
    converge(a, b)
    assert tree(b.root) == {"doc.txt": b"doc"}
    write(a.root / "disk.iso", "huge, v2")
    (a.root / "cache" / "c.dat").unlink()
    converge(a, b)
    assert tree(b.root) == {"doc.txt": b"doc"}
    assert tree(a.root) == {"doc.txt": b"doc", "disk.iso": b"huge, v2"}  # b never pushed its absence


def test_paths_outside_synced_folders_are_refused(make_device: Callable[..., Device], tmp_path: Path) -> None:
    a = make_device("alice", "a")
    write(a.root / "x.txt", "x")
    a.sync()
    with pytest.raises(EngineError, match="not inside a synced folder"):
        a.engine.exclude(tmp_path / "elsewhere")
    with pytest.raises(EngineError, match="synced folder itself"):
        a.engine.exclude(a.root)
