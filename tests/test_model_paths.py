"""The fast path of ``validate_file_path`` accepts nothing the full checks refuse, and the verdicts are unchanged.

``_is_plain_path`` (one regex) answers for the common path; ``_check_file_path`` holds every check with its message.
Both are compared on hand-picked tricky paths and on random ones built from the characters that matter.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from oaiod.errors import ValidationError
from oaiod.model import (
    MAX_PATH_BYTES,
    MAX_PATH_COMPONENT_BYTES,
    _all_plain_and_distinct,
    _check_file_path,
    _is_plain_path,
    validate_file_path,
    validate_file_paths,
)

LONG = "n" * MAX_PATH_COMPONENT_BYTES

TRICKY = [
    "a", "a/b", "a b/c d.txt", "~", "-", "a:b", "a/C:/x", "a/C:", "C:", "C:x", "c:/x", "1:x", "::", "a|b", "a*?<>\"'",
    ".", "..", "...", "./a", "../a", "a/.", "a/..", "a/./b", "a/../b", "a/.../b", ".a", "..a", "a.", "a..", ".a/..b",
    "", "/", "//", "a//b", "a/", "/a", "//a", "a/b/", " ", " /a", "a/ ", "a\\b", "\\a", "a\\",
    "a\x00b", "a\x1fb", "a\x7fb", "a\tb", "a\nb", "\x00", "\x7f", "a\rb",
    "é", "a/é", "日本/語.txt", "a\u202eb", "a\u2028b", "a\u2029b", "a\u0085b", "a\ud800b", "\ud800", "a\u200bb",
    "a\ufeffb", "\U0001f600/x", "a\u00a0b", "a\u061cb", "a\u2066b",
    LONG, LONG + "n", f"a/{LONG}", f"a/{LONG}n", f"{LONG}/{LONG}",
    "é" * 127, "é" * 128, f"a/{'é' * 128}",
    "/".join(["d" * 200] * 20), "/".join(["d" * 200] * 21),
    "x" * 100 + "/" + "/".join(["d" * 254] * 15) + "/" + "y" * 10,
    ("a/" * 2048)[:-1], ("a/" * 2048)[:-1] + "b", ("a/" * 2049)[:-1],
    "/".join(["a" * 255] * 16), "/".join(["a" * 255] * 16) + "/a",
]  # fmt: skip

NOT_STRINGS = [None, 1, 1.5, b"a", ["a"], {"a": 1}, True]


def verdict(check, value: object) -> bool:
    try:
        check(value, "path")
    except ValidationError:
        return False
    return True


def assert_same(value: object) -> None:
    full = verdict(_check_file_path, value)
    assert verdict(validate_file_path, value) == full, repr(value)[:120]
    if _is_plain_path(value):
        assert full, f"the fast path accepts {value!r:.120}, the full checks refuse it"


@pytest.mark.parametrize("value", TRICKY + NOT_STRINGS, ids=lambda v: repr(v)[:40])
def test_fast_path_agrees_on_tricky_paths(value: object) -> None:
    assert_same(value)


def test_fast_path_agrees_on_random_paths() -> None:
    alphabet = ["a", "Z", "0", " ", ".", "..", "/", "//", "\\", ":", "C:", "\x00", "\x1f", "\x7f", "é", "\u202e",
                "\ud800", "~", "-", "\t", "日"]  # fmt: skip
    rng = random.Random(20240611)
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert_same(value)
    for _ in range(300):  # near the length limits
        parts = [rng.choice("ab.é") * rng.randint(1, MAX_PATH_COMPONENT_BYTES + 1) for _ in range(rng.randint(1, 20))]
        value = "/".join(parts)
        assert_same(value)
        assert_same(value[: MAX_PATH_BYTES + rng.randint(-2, 2)])


def one_by_one(paths: list[Any]) -> bool:
    """The reference verdict on a list: every entry passes the full checks, and none repeats."""
    return all(verdict(_check_file_path, path) for path in paths) and len(set(map(repr, paths))) == len(paths)


def list_verdict(paths: list[Any]) -> bool:
    try:
        validate_file_paths(paths)
    except ValidationError:
        return False
    return True


def test_list_fast_path_agrees() -> None:
    """The whole-list regex (lines of plain paths) must not let a bad entry hide at a line boundary."""
    cases: list[list[Any]] = [[value] for value in TRICKY + NOT_STRINGS]
    cases += (
        [["a", value] for value in TRICKY]
        + [[value, "b"] for value in TRICKY]
        + [["a", value, "b"] for value in TRICKY]
    )
    cases += [["a\n.", "b"], ["a", ".\nb"], ["a\nb"], ["a", "a"], ["a/b", "a/b/"], ["x", "C:y"], ["x\n", "y"], []]
    rng = random.Random(11)
    pool = ["a", "b/c", ".", "..", "a/.", "../a", "C:x", "x:C", "é", "a\nb", "\n", "", "a//b", "a/", "...", "a b"]
    cases += [[rng.choice(pool) for _ in range(rng.randint(1, 6))] for _ in range(3000)]
    for paths in cases:
        assert list_verdict(paths) == one_by_one(paths), paths
    many = [f"d{number // 100:04d}/f{number:06d}.dat" for number in range(10_000)]
    assert _all_plain_and_distinct(many) and validate_file_paths(many) is many
    assert not _all_plain_and_distinct([*many, many[5]])


def test_plain_paths_take_the_fast_path() -> None:
    for value in ("a", "d0001/f000123.dat", "My Documents/report (final) #2.pdf", "a/C:x", "...", f"x/{LONG}"):
        assert _is_plain_path(value), value
    # names beyond ASCII, and storage keys (an oaio id's defused characters) take it too
    for value in ("Übersicht/Straße.txt", "日本/語.txt", "oaiod⫻u5﹫b⁄oaiod-root⁄20261122054107025030/x/f.dat"):
        assert _is_plain_path(value), value
    assert _all_plain_and_distinct(["Übersicht/a.txt", "日本/語.txt", "plain/ascii"])


def test_list_keeps_its_first_error() -> None:
    """The first bad entry decides the message: a duplicate before a bad path, a bad path before a duplicate."""
    with pytest.raises(ValidationError, match="twice"):
        validate_file_paths(["a", "b", "a", "../x"])
    with pytest.raises(ValidationError, match="not normalized"):
        validate_file_paths(["a", "../x", "a"])
    with pytest.raises(ValidationError, match="must be a string"):
        validate_file_paths(["a", 3, "a"])
    assert validate_file_paths(["a", "é/b", "a b"]) == ["a", "é/b", "a b"]
