"""Scanner, ignore rules and placeholder mapping."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from oaiod.engine.ignore import IgnoreRules
from oaiod.engine.placeholders import PathMapper, safe_folder_name
from oaiod.engine.scanner import file_sha256, scan
from oaiod.state.repo import FileStat


def _old(path: Path) -> None:
    past = time.time_ns() - 10_000_000_000
    os.utime(path, ns=(past, past))


def _write(path: Path, data: bytes, *, old: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        _old(path)


def test_sha256_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big").write_bytes(data)
    assert file_sha256(tmp_path / "big") == hashlib.sha256(data).hexdigest()


def test_scan_hashes_only_changed_and_reports(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", b"a")
    _write(tmp_path / "sub" / "b.txt", b"b")
    _write(tmp_path / "x.swp", b"swap")
    _write(tmp_path / ".oaiod" / "trash" / "t", b"t")
    _write(tmp_path / "other" / "c", b"c")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    first = scan(tmp_path, {}, ignore=IgnoreRules(), exclude=frozenset({"other"}))
    assert sorted(h.file.path for h in first.changed) == ["a.txt", "sub/b.txt"]
    assert first.symlinks == ["link"]
    index = {h.file.path: h.file.stat for h in first.changed}
    index["gone.txt"] = FileStat(1, 1, 1)
    index["other/c"] = FileStat(1, 1, 1)  # belongs to an excluded root: not this scan's business
    second = scan(tmp_path, index, exclude=frozenset({"other"}))
    assert second.changed == [] and second.missing == ["gone.txt"]
    _write(tmp_path / "sub" / "b.txt", b"bb")
    third = scan(tmp_path, index, "sub")
    assert [h.file.path for h in third.changed] == ["sub/b.txt"]


def test_a_chmod_of_the_executable_bit_alone_is_a_change(tmp_path: Path) -> None:
    """chmod changes neither size nor mtime: the rescan compares the indexed bit too (rows without it: not)."""
    _write(tmp_path / "run.sh", b"echo hi")
    st = (tmp_path / "run.sh").stat()
    index = {"run.sh": FileStat(st.st_size, st.st_mtime_ns, st.st_ino, executable=False)}
    assert scan(tmp_path, index).changed == []
    (tmp_path / "run.sh").chmod(0o755)
    [changed] = scan(tmp_path, index).changed
    assert changed.file.path == "run.sh" and changed.file.executable
    unknown = {"run.sh": FileStat(st.st_size, st.st_mtime_ns, st.st_ino)}  # executable None: not compared
    assert scan(tmp_path, unknown).changed == []


def test_files_being_written_wait_for_the_quiet_period(tmp_path: Path) -> None:
    _write(tmp_path / "fresh", b"x", old=False)
    result = scan(tmp_path, {}, quiet_period=60)
    assert result.unstable == ["fresh"] and result.changed == []
    assert [h.file.path for h in scan(tmp_path, {}, quiet_period=0).changed] == ["fresh"]


def test_a_file_from_the_future_is_not_waited_for(tmp_path: Path) -> None:
    """An mtime ahead of the clock (the clock was set back, or the file came from an archive or another machine
    with its times) is not a file being written: it syncs now, not once the clock catches up (issue 10, clock
    jumps)."""
    future = time.time_ns() + 3600 * 10**9
    path = tmp_path / "from-the-future"
    path.write_bytes(b"x")
    os.utime(path, ns=(future, future))
    result = scan(tmp_path, {}, quiet_period=60)
    assert [h.file.path for h in result.changed] == ["from-the-future"] and result.unstable == []


def test_ignore_rules(tmp_path: Path) -> None:
    (tmp_path / ".oaioignore").write_text("*.log\nbuild/\n!keep.log\n")
    rules = IgnoreRules.for_root(tmp_path)
    for name in ("x.swp", "x~", ".#x", "4913", ".DS_Store", "Thumbs.db", "~$doc.docx", ".oaiod-tmp-1", "a/b.log"):
        assert rules.ignored(name), name
    assert rules.ignored(".oaiod", is_dir=True) and rules.ignored("build", is_dir=True)
    assert not rules.ignored("keep.log") and not rules.ignored("notes.txt") and not rules.ignored("build.txt")


@pytest.fixture
def mapper(tmp_path: Path) -> PathMapper:
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    (home / ".ssh").mkdir()
    (home / "oaio_root").mkdir()
    (home / ".local" / "state" / "oaiod").mkdir(parents=True)
    return PathMapper(home / "oaio_root", home / ".local" / "state" / "oaiod", home=home)


def test_placeholder_round_trip(mapper: PathMapper) -> None:
    home = mapper.home
    assert mapper.to_placeholder(home / "Documents" / "x") == "{doc}/x"
    assert mapper.to_placeholder(home / "oaio_root" / "y") == "~/oaio_root/y"
    assert mapper.to_placeholder(Path("/srv/data")) == "/srv/data"
    assert mapper.expand("{doc}/x") == home / "Documents" / "x"
    assert mapper.expand("~/oaio_root/y") == home / "oaio_root" / "y"
    assert mapper.expand("{nope}/x") is None and mapper.expand("relative/x") is None


@pytest.mark.parametrize(
    "hostile",
    ["~/.ssh", "/etc", "{usr}/../..", "{doc}/../.ssh", "~/oaio_root/../.ssh", "~/.local/state/oaiod", "~", "/"],
)
def test_hostile_root_paths_are_not_accepted(mapper: PathMapper, hostile: str) -> None:
    assert mapper.resolve_root(hostile, [mapper.client_root, mapper.home / "Documents"]) is None


def test_root_paths_inside_synced_roots_are_accepted(mapper: PathMapper) -> None:
    roots = [mapper.client_root]
    assert mapper.resolve_root("~/oaio_root/shared", roots) == mapper.client_root / "shared"
    # a symlink inside a root that points out of it does not lead out
    (mapper.client_root / "esc").symlink_to(mapper.home / ".ssh")
    assert mapper.resolve_root("~/oaio_root/esc", roots) is None
    assert mapper.resolve_root("~/oaio_root/esc/keys", roots) is None


def test_fallback_names(mapper: PathMapper) -> None:
    first = mapper.fallback_root("{usr}/projects/../x", [])
    assert first == mapper.client_root / "x"
    assert mapper.fallback_root("x", [first]) == mapper.client_root / "x (2)"
    assert mapper.fallback_root("docs", [], suffix=" (bob)") == mapper.client_root / "docs (bob)"
    assert safe_folder_name("..") == "object" and safe_folder_name("a/b\x00") == "object"


#: names around "/" in code point order, a folder beside files with its name as prefix, non-ASCII
TRICKY_NAMES = ("a-b", "a b", "a0", "ab", "A", "é", "z", "~x", "a/b-c", "a/b/c", "a.b/c", "ü/x", "a.c", "a/b.d")


def test_walk_order_matches_the_index_order(tmp_path: Path) -> None:
    """The scan merges the walk with rows in SQLite's path order: a mismatch would report present files missing."""
    from oaiod.state import StateRepo
    from oaiod.state.models import KIND_FOLDER, FileRow, ObjectRow

    root = tmp_path / "root"
    for name in TRICKY_NAMES:
        _write(root / name, name.encode())
    first = scan(root, {})
    assert [h.file.path for h in first.changed] == sorted(h.file.path for h in first.changed)
    repo = StateRepo(tmp_path / "state")
    repo.save_object(ObjectRow(oaio_id="o", kind=KIND_FOLDER, local_root=str(root)))
    with repo.session() as s:
        for h in first.changed:
            s.add(
                FileRow(oaio_id="o", path=h.file.path, size=h.file.size, mtime_ns=h.file.mtime_ns, inode=h.file.inode)
            )
    second = scan(root, repo.iter_file_stats("o"))
    assert (second.changed, second.missing, second.seen) == ([], [], len(first.changed))
    assert [row[0] for row in repo.iter_file_stats("o", "a")] == ["a/b-c", "a/b.d", "a/b/c"]
    repo.close()


def test_an_unlistable_folder_is_not_taken_as_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be listed keeps its indexed files (deleting them on the server would lose data).

    The tests run as root, who can list anything: the failure is injected where the walk opens that one folder.
    """
    _write(tmp_path / "locked" / "f", b"f")
    _write(tmp_path / "g", b"g")
    index = {h.file.path: h.file.stat for h in scan(tmp_path, {}).changed}
    real_open = os.open

    def open_folder(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if str(path).endswith("locked") and flags & os.O_DIRECTORY:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("oaiod.engine.scanner.os.open", open_folder)
    result = scan(tmp_path, index)
    assert (result.missing, result.changed, result.seen) == ([], [], 1)
    assert scan(tmp_path / "locked", {"f": FileStat(1, 1, 1)}).missing == []  # the whole root unlistable


def test_names_that_are_not_utf8_are_skipped(tmp_path: Path) -> None:
    _write(tmp_path / "ok", b"ok")
    bad = os.fsencode(tmp_path) + b"/bad-\xff"
    with open(bad, "wb") as handle:
        handle.write(b"x")
    past = time.time_ns() - 10_000_000_000
    os.utime(bad, ns=(past, past))
    assert [h.file.path for h in scan(tmp_path, {}).changed] == ["ok"]
