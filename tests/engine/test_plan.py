"""The three-way merge table of design §5, mass deletion and conflict names, as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from oaiod.engine.plan import (
    UNKNOWN,
    Action,
    conflict_name,
    decide,
    is_mass_deletion,
    merge_values,
    under_remote_folders,
)
from oaiod.model import fitted_name, validate_file_path

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.mark.parametrize(
    ("base", "local", "remote", "action"),
    [
        (A, A, B, Action.DOWNLOAD),  # same | changed
        (A, B, A, Action.PUSH),  # changed | same
        (A, B, B, Action.NOTHING),  # changed | changed, same content
        (A, B, C, Action.CONFLICT),  # changed | changed, different
        (A, A, None, Action.TRASH_LOCAL),  # same | deleted
        (A, None, A, Action.PUSH),  # deleted | same
        (A, B, None, Action.KEEP_LOCAL),  # changed | deleted
        (A, None, B, Action.RESTORE),  # deleted | changed
        (None, None, B, Action.DOWNLOAD),  # new remote file
        (None, B, None, Action.PUSH),  # new local file
        (None, B, C, Action.CONFLICT),  # both added differently
        (A, None, None, Action.NOTHING),  # deleted on both sides
        (A, A, UNKNOWN, Action.FETCH_AND_DECIDE),
    ],
)
def test_merge_table(base: str | None, local: str | None, remote: object, action: Action) -> None:
    assert decide(base, local, remote) is action  # type: ignore[arg-type]


def test_without_base_the_users_file_is_never_touched() -> None:
    assert decide(None, A, B, has_base=False) is Action.CONFLICT_NO_BASE
    assert decide(None, A, A, has_base=False) is Action.NOTHING
    assert decide(None, None, B, has_base=False) is Action.DOWNLOAD
    assert decide(None, A, None, has_base=False) is Action.PUSH


def test_conflict_names() -> None:
    when = dt.datetime(2025, 11, 22, 10, 15, 0)
    assert (
        conflict_name("docs/report.txt", "dev2", when)
        == "docs/report (conflicted copy from dev2 2025-11-22 101500).txt"
    )
    assert conflict_name("Makefile", "d", when) == "Makefile (conflicted copy from d 2025-11-22 101500)"
    assert conflict_name(".bashrc", "d", when) == ".bashrc (conflicted copy from d 2025-11-22 101500)"


def test_mass_deletion() -> None:
    assert is_mass_deletion(6, 10, ratio=0.5, minimum=5)
    assert not is_mass_deletion(5, 10, ratio=0.5, minimum=5)  # not more than half
    assert not is_mass_deletion(4, 4, ratio=0.5, minimum=5)  # too few to matter
    assert not is_mass_deletion(0, 0, ratio=0.5, minimum=5)


def test_values_merge_by_key() -> None:
    base = {"k1": 1, "k2": 2, "k3": 3, "gone": 0}
    local = {"k1": 10, "k2": 2, "k3": 30, "gone": 0, "new": "l"}
    remote = {"k1": 1, "k2": 20, "k3": 31, "new2": "r"}
    merged, conflicts = merge_values(base, local, remote)
    assert merged == {"k1": 10, "k2": 20, "k3": 31, "new": "l", "new2": "r"}
    assert conflicts == ["k3"]
    assert merge_values(base, local, remote, local_newer=True)[0]["k3"] == 30


def test_names_oaiod_makes_fit_the_file_system() -> None:
    """Conflicted copies, numbered ones and trash names of long names stay within 255 bytes, extension kept."""
    when = dt.datetime(2025, 11, 22, 10, 15, 0)
    for name in ["x" * 210 + ".txt", "é" * 125 + ".md", "😀" * 63 + ".tar.gz", "z" * 255, "a." + "e" * 250]:
        for number in (1, 2, 1000):
            copy = conflict_name(f"docs/{name}", "a-device-with-a-long-id", when, number)
            folder, _, made = copy.rpartition("/")
            assert folder == "docs" and len(made.encode()) <= 255 and made.encode().decode() == made
            assert "(conflicted copy from a-device-with-a-long-id 2025-11-22 101500)" in made
            if name.endswith((".txt", ".md", ".gz")):
                assert made.endswith(name[name.rindex(".") :])
        trashed = fitted_name(name, " (2)")
        assert len(trashed.encode()) <= 255 and " (2)" in trashed
    assert conflict_name("a.txt", "d", when, 3) == "a (conflicted copy from d 2025-11-22 101500) 3.txt"
    assert fitted_name("my.project", " (bob)", extension=False) == "my.project (bob)"


def test_local_files_that_are_folders_in_the_remote_version() -> None:
    remote = ["X/f.txt", "a/b/c.txt", "Xy.txt", "docs/readme.md"]
    local = ["X", "a/b", "a", "Xy", "docs/readme.md", "X/f.txt", "d"]
    assert under_remote_folders(local, remote) == {"X", "a/b", "a"}
    assert under_remote_folders([], remote) == set() and under_remote_folders(["X"], []) == set()


def test_conflict_names_are_valid_paths_for_any_device_id() -> None:
    """Another client's device id (up to 150 printable characters, any script, backslashes) once made a name of
    345 bytes or with a backslash: check_path refused it and that file's merge failed every cycle."""
    when = dt.datetime(2025, 11, 22, 10, 15, 0)
    for device in ["é" * 150, "😀" * 150, "C:\\devices\\laptop", "a/b"]:
        copy = conflict_name("docs/report.txt", device, when, 2)
        assert validate_file_path(copy) == copy and copy.startswith("docs/report (conflicted copy from ")
        assert copy.endswith(" 2025-11-22 101500) 2.txt") and len(copy.rpartition("/")[2].encode()) <= 255
