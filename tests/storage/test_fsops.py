"""The shared filesystem calls: a no-replace rename that leaves whatever appeared at the target alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oaiod.storage import fsops


@pytest.fixture(params=["renameat2", "link"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways: the Linux call, and the hard-link fallback of systems without it (forced: this kernel has it)."""
    if request.param == "link":
        monkeypatch.setattr(fsops, "_RENAMEAT2", None)
    elif fsops._RENAMEAT2 is None:
        pytest.skip("no renameat2 in this libc")
    return str(request.param)


def test_rename_into_an_absent_name(tmp_path: Path, way: str) -> None:
    (tmp_path / "src").write_text("new")
    assert fsops.rename_noreplace(tmp_path / "src", tmp_path / "dst") is True
    assert (tmp_path / "dst").read_text() == "new" and not (tmp_path / "src").exists()


@pytest.mark.parametrize("kind", ["file", "folder", "symlink", "dangling symlink"])
def test_whatever_is_at_the_target_stays(tmp_path: Path, way: str, kind: str) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    source.write_text("new")
    if kind == "file":
        target.write_text("user's")
    elif kind == "folder":
        target.mkdir()
    else:
        (tmp_path / "elsewhere").write_text("other")
        target.symlink_to(tmp_path / ("elsewhere" if kind == "symlink" else "missing"))
    assert fsops.rename_noreplace(source, target) is False
    assert source.read_text() == "new"
    if kind == "file":
        assert target.read_text() == "user's"
    elif kind == "folder":
        assert target.is_dir() and not any(target.iterdir())
    else:
        assert target.is_symlink() and (tmp_path / "elsewhere").read_text() == "other"


def test_a_missing_source_raises(tmp_path: Path, way: str) -> None:
    with pytest.raises(FileNotFoundError):
        fsops.rename_noreplace(tmp_path / "nothing", tmp_path / "dst")
    assert not os.path.lexists(tmp_path / "dst")


def test_start_writeback_is_a_hint_that_leaves_the_file_as_written(tmp_path: Path) -> None:
    """The file's bytes are unchanged (it only starts their writeback); a range and a descriptor the call refuses
    (a pipe) do not raise."""
    path = tmp_path / "f"
    with path.open("wb") as file:
        file.write(b"x" * 100_000)
        fsops.start_writeback(file.fileno())
        fsops.start_writeback(file.fileno(), 4096, 8192)
    assert path.read_bytes() == b"x" * 100_000
    read_end, write_end = os.pipe()
    try:
        fsops.start_writeback(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
