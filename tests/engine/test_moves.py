"""The pure folder-rename finder of a pull (:func:`oaiod.engine.moves.find_folder_moves`)."""

from __future__ import annotations

from oaiod.engine.moves import Arriving, Leaving, find_folder_moves
from oaiod.state.repo import FileStat


def leaving(**files: str) -> dict[str, Leaving]:
    return {
        path.replace("__", "/"): Leaving(sha, False, FileStat(1, 7, n)) for n, (path, sha) in enumerate(files.items())
    }


def arriving(**files: str) -> dict[str, Arriving]:
    return {path.replace("__", "/"): Arriving(sha, False, 7) for path, sha in files.items()}


def pairs(
    old: dict[str, Leaving], new: dict[str, Arriving], other_remote: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    return [(move.old, move.new) for move in find_folder_moves(old, new, [*new, *other_remote])]


def test_a_renamed_folder_is_found_whole_and_only_once() -> None:
    old = leaving(a__x="1", a__sub__y="2")
    assert pairs(old, arriving(b__x="1", b__sub__y="2")) == [("a", "b")]
    moves = find_folder_moves(old, arriving(b__x="1", b__sub__y="2"), ["b/x", "b/sub/y"])
    assert set(moves[0].files) == {"x", "sub/y"}


def test_a_folder_moved_into_a_new_parent_pairs_the_shallowest_folders() -> None:
    """``p`` held only ``a/x``, which now lies in ``q/r/a/x`` (``q`` and ``q/r`` new): ``p`` becomes ``q/r``."""
    assert pairs(leaving(p__a__x="1"), arriving(q__r__a__x="1")) == [("p", "q/r")]


def test_no_move_when_the_contents_differ() -> None:
    assert pairs(leaving(a__x="1", a__y="2"), arriving(b__x="1", b__y="3")) == []
    assert pairs(leaving(a__x="1", a__y="2"), arriving(b__x="1")) == []  # a subset is not the folder
    assert pairs(leaving(a__x="1"), arriving(b__x="1", b__y="2")) == []


def test_no_move_when_the_old_folder_keeps_a_server_file_or_the_new_one_holds_an_old_one() -> None:
    assert pairs(leaving(a__x="1"), arriving(b__x="1"), other_remote=("a/kept",)) == []
    assert pairs(leaving(a__x="1"), arriving(b__x="1"), other_remote=("b/known",)) == []


def test_no_move_between_a_folder_and_one_inside_it() -> None:
    assert pairs(leaving(a__x="1"), arriving(a__b__x="1"), other_remote=()) == []


def test_executable_bit_and_mtime_are_part_of_the_folder() -> None:
    old = leaving(a__x="1")
    assert pairs(old, {"b/x": Arriving("1", True, 7)}) == []
    assert pairs(old, {"b/x": Arriving("1", False, 8)}) == []
