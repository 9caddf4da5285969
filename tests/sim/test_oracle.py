"""The oracle of the randomized runs finds what it must: a test of the checker on hand-made folders."""

from __future__ import annotations

from pathlib import Path

from sim.oracle import Ledger, check, snapshot


def _folders(tmp_path: Path, files: dict[str, dict[str, bytes]]) -> dict[str, Path]:
    folders = {}
    for device, tree in files.items():
        folders[device] = tmp_path / device
        folders[device].mkdir()
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
    ledger.destroy(b"deleted")
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
