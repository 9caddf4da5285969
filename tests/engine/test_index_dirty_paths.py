"""Dirty paths from the watcher are indexed per object in one pass: nested paths are covered by their folder."""

from __future__ import annotations

from oaiod.engine.index import covering


def test_a_path_inside_another_given_is_covered() -> None:
    given = ["d1/f1", "d1", "d1/sub/f2", "d1-x/f", "d10/f", "top.txt", "d1/sub"]
    assert covering(given) == ["d1", "d1-x/f", "d10/f", "top.txt"]


def test_the_root_covers_everything() -> None:
    assert covering(["a/b", "", "c"]) == [""]


def test_duplicates_are_scanned_once() -> None:
    assert covering(["a/b", "a/b", "a/c"]) == ["a/b", "a/c"]
