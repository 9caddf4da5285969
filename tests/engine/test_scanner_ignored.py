"""The scanner's view of files ignored after they were synced (design §6): never missing, frozen, found again."""

from __future__ import annotations

import os
import time
from pathlib import Path

from oaiod.engine.ignore import IgnoreRules
from oaiod.engine.scanner import scan


def _write(path: Path, data: bytes = b"x") -> os.stat_result:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    past = time.time_ns() - 10_000_000_000
    os.utime(path, ns=(past, past))
    return path.stat()


def test_rows_the_rules_cover_are_ignored_not_missing(tmp_path: Path) -> None:
    for name in ("a.log", "build/x", "keep.txt", "found.txt"):
        _write(tmp_path / name)
    st = {name: (tmp_path / name).stat() for name in ("keep.txt", "found.txt")}
    rows = [  # (path, size, mtime_ns, inode, present, ignored), sorted by path
        ("a.log", 1, 1, 1, True, False),  # synced, ignored now
        ("back.txt", 1, 1, 1, True, True),  # frozen, no longer ignored, deleted meanwhile
        ("build/x", 1, 1, 1, True, False),  # in an ignored folder
        ("found.txt", st["found.txt"].st_size, st["found.txt"].st_mtime_ns, st["found.txt"].st_ino, True, True),
        ("gone.txt", 1, 1, 1, True, False),
        ("keep.txt", st["keep.txt"].st_size, st["keep.txt"].st_mtime_ns, st["keep.txt"].st_ino, True, False),
        ("old.log", 1, 1, 1, True, True),  # frozen, still ignored, deleted: stays frozen
    ]
    result = scan(tmp_path, rows, ignore=IgnoreRules(["*.log", "build/"]))
    assert (result.ignored, result.restore, result.unignored) == (["a.log", "build/x"], ["back.txt"], ["found.txt"])
    assert result.missing == ["gone.txt"] and result.changed == []


def test_a_dirty_path_inside_an_ignored_folder_is_not_indexed(tmp_path: Path) -> None:
    _write(tmp_path / "build" / "deep" / "x")
    rules = IgnoreRules(["build/"])
    assert scan(tmp_path, {}, "build/deep/x", ignore=rules).changed == []
    assert scan(tmp_path, {}, "build/deep", ignore=rules).changed == []
    assert rules.covers("build/deep/x") and not rules.covers("src/build.txt")
    assert IgnoreRules().covers(".oaiod/trash/2025/x")  # built-in folder patterns cover what lies inside


def test_covers_remembers_folders_without_changing_a_verdict() -> None:
    """covers() answers per folder once (a pull asks for every file): the same verdicts as asking every level, in
    any order, with negations and at a depth beyond Python's recursion limit."""
    import random

    def every_level(rules: IgnoreRules, rel: str) -> bool:
        parts = rel.split("/")
        folders = ("/".join(parts[:depth]) for depth in range(1, len(parts)))
        return any(rules.ignored(folder, is_dir=True) for folder in folders) or rules.ignored(rel)

    rng = random.Random(7)
    names = ["a", "b", "build", "x.log", "keep.log", ".oaiod", "c~", "d"]
    for rules in (IgnoreRules(["build/", "*.log", "!keep.log", "a/b/"]), IgnoreRules()):
        for _ in range(5000):
            rel = "/".join(rng.choice(names) for _ in range(rng.randint(1, 6)))
            assert rules.covers(rel) == every_level(rules, rel), rel
    assert not IgnoreRules().covers("/".join(["a"] * 3000))
    assert IgnoreRules(["a/"]).covers("/".join(["a"] * 3000))
