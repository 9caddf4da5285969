"""The oracle of the randomized runs finds what it must: a test of the checker on hand-made folders."""

from __future__ import annotations

from pathlib import Path

from sim.oracle import Ledger, check, snapshot


def _folders(tmp_path: Path, files: dict[str, dict[str, bytes]]) -> dict[str, Path]:
    folders = {}
    for device, tree in files.items():
        folders[device] = tmp_path / device
        folders[device].mkdir(parents=True)
        for rel, data in tree.items():
            (folders[device] / rel).parent.mkdir(parents=True, exist_ok=True)
            (folders[device] / rel).write_bytes(data)
    return folders


def _check(ledger: Ledger, folders: dict[str, Path]) -> list[str]:
    return check(ledger, {d: snapshot(f) for d, f in folders.items()}, folders)


def test_identical_folders_with_every_written_content_pass(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.wrote(b"one", "w1")
    ledger.wrote(b"two", "w2")
    ledger.wrote(b"old", "w0")
    ledger.destroy(b"old")
    tree = {"a.txt": b"one", "d/b.txt": b"two"}
    folders = _folders(tmp_path, {"x": tree, "y": {**tree, ".oaiod/trash/2024-01-01/a.txt": b"old"}})
    assert _check(ledger, folders) == []


def test_each_broken_invariant_is_reported(tmp_path: Path) -> None:
    ledger = Ledger()
    for data in (b"kept", b"lost", b"deleted"):
        ledger.wrote(data, data.decode())
    ledger.destroy(b"deleted", deleted=True)
    folders = _folders(
        tmp_path,
        {
            "x": {"a.txt": b"kept", "gone.txt": b"deleted", "torn.txt": b"kep"},
            "y": {"a.txt": b"kept", ".oaiod-tmp-1234": b"kept"},
        },
    )
    problems = "\n".join(_check(ledger, folders))
    assert "x and y differ" in problems
    assert "temp files remain on y" in problems
    assert "lost: the content of lost" in problems
    assert "content never written" in problems and "torn.txt" in problems
    assert "came back after a user destroyed it" in problems and "gone.txt" in problems


def test_a_moved_content_may_come_back_and_executable_bits_count(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.wrote(b"moved", "m")
    ledger.destroy(b"moved")
    ledger.move(b"moved")
    folders = _folders(tmp_path, {"x": {"m.txt": b"moved"}, "y": {"m.txt": b"moved"}})
    assert _check(ledger, folders) == []
    (folders["y"] / "m.txt").chmod(0o755)
    assert "differ" in _check(ledger, folders)[0]


def test_an_edited_content_may_stay_as_a_conflicted_copy_but_a_deleted_one_may_not(tmp_path: Path) -> None:
    """Sim seed 11: a conflicted copy kept A's content from a concurrent write before C edited its own copy of it."""
    ledger = Ledger()
    for data in (b"edited", b"deleted", b"now"):
        ledger.wrote(data, data.decode())
    ledger.destroy(b"edited")
    ledger.destroy(b"deleted", deleted=True)
    kept = {"f": b"now", "f (conflicted copy from a 2026-01-01 000000)": b"edited"}
    assert _check(ledger, _folders(tmp_path / "1", {"x": kept, "y": kept})) == []
    back = {"f": b"now", "g (conflicted copy from a 2026-01-01 000000)": b"deleted"}
    assert "came back" in "\n".join(_check(ledger, _folders(tmp_path / "2", {"x": back, "y": back})))
    edited_back = {"f": b"edited"}  # under its own name an edited content is still a resurrection
    assert "came back" in "\n".join(_check(ledger, _folders(tmp_path / "3", {"x": edited_back, "y": edited_back})))
