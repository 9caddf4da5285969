"""What the run must guarantee (issue 10 §1's invariants), checked from what the driver did and what is on disk.

The driver records every content it writes (:meth:`Ledger.wrote`), every content a user op destroyed on purpose
(delete, overwrite, truncate, append, a move onto an existing file, a folder deleted) and every content a user
moved or changed the mode of (it may legitimately come back at a new path, or as a kept modification of a file
another device deleted). After the run, with every device online and quiet:

- every root is identical: the same files, contents and executable bits, and the same folders — empty ones
  included (a snapshot lists an empty folder as ``path/``);
- no download temp file (``.oaiod-tmp-*``) remains anywhere;
- every content written and not destroyed by a user exists somewhere: in a root (a conflicted copy included) or
  in a device's trash (``.oaiod/trash``);
- no file, in a root or a trash, holds a content that was never written (no torn or mixed file);
- nothing deleted comes back: a destroyed content is in no root unless a user moved it or changed its mode, or it
  was edited (not deleted) and a conflicted copy kept it from a concurrent write;
- every daemon is alive and ``ctl status`` is not ``error``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from oaiod.engine.ignore import STATE_FOLDER, TEMP_PREFIX

EMPTY = hashlib.sha256(b"").hexdigest()
CONFLICT_MARK = " (conflicted copy from "
FOLDER = "folder"  #: what a snapshot holds for an empty folder in place of a sha256


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Ledger:
    """Contents by sha256: each written one with the step that wrote it, and the fates users gave them."""

    written: dict[str, str] = field(default_factory=dict)  #: sha256 -> "step N dev path" of its first write
    destroyed: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)  #: destroyed by a delete (not an edit in place)
    moved: set[str] = field(default_factory=set)

    def wrote(self, data: bytes, where: str) -> None:
        self.written.setdefault(digest(data), where)

    def destroy(self, data: bytes, *, deleted: bool = False) -> None:
        """``data`` was overwritten, appended to or truncated (an edit) or, with ``deleted``, deleted."""
        self.destroyed.add(digest(data))
        if deleted:
            self.deleted.add(digest(data))

    def move(self, data: bytes) -> None:
        self.moved.add(digest(data))


_HASHES: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: Path) -> str | None:
    """sha256 of a file (cached by path, size, mtime and inode), None when it vanished meanwhile."""
    try:
        info = path.lstat()
        key = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
        if key not in _HASHES:
            sha = hashlib.sha256()
            with path.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    sha.update(chunk)
            _HASHES[key] = sha.hexdigest()
        return _HASHES[key]
    except (FileNotFoundError, NotADirectoryError):
        return None


def snapshot(root: Path, skip: frozenset[str] = frozenset()) -> dict[str, tuple[str, bool]]:
    """``path -> (sha256, executable)`` of every regular file under ``root`` but oaiod's ``.oaiod/`` (and the top
    folders in ``skip``), and ``path/ -> (FOLDER, False)`` of every empty folder; temp files are included, so a
    converged snapshot has none."""
    found: dict[str, tuple[str, bool]] = {}
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        if rel_folder == ".":
            dirs[:] = [d for d in dirs if d != STATE_FOLDER and d not in skip]
            rel_folder = ""
        elif not dirs and not files:
            found[f"{rel_folder}/"] = (FOLDER, False)
        for name in files:
            path = Path(folder, name)
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            sha = file_digest(path)
            if sha is not None:
                rel = f"{rel_folder}/{name}" if rel_folder else name
                found[rel] = (sha, bool(info.st_mode & stat.S_IXUSR))
    return found


def every_content(folder: Path) -> dict[str, str]:
    """sha256 -> one path of it, for every regular file under ``folder``, oaiod's trash included."""
    found: dict[str, str] = {}
    for top, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(top, name)
            if path.is_symlink() or not path.is_file():
                continue
            sha = file_digest(path)
            if sha is not None:
                found.setdefault(sha, str(path))
    return found


def temp_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(f"{TEMP_PREFIX}*") if f"/{STATE_FOLDER}/" not in f"/{p.relative_to(folder)}"]


def check(
    ledger: Ledger,
    roots: dict[str, dict[str, tuple[str, bool]]],
    stores: dict[str, Path],
) -> list[str]:
    """The invariants' violations (empty: all hold). ``roots``: device -> snapshot of its copy of the synced
    folder; ``stores``: device -> every folder of that device (roots, trash, state), searched for contents."""
    problems: list[str] = []
    devices = sorted(roots)
    first = roots[devices[0]]
    for device in devices[1:]:
        other = roots[device]
        if other != first:
            only_a = sorted(first.keys() - other.keys())[:10]
            only_b = sorted(other.keys() - first.keys())[:10]
            differ = sorted(k for k in first.keys() & other.keys() if first[k] != other[k])[:10]
            problems.append(
                f"{devices[0]} and {device} differ: only on {devices[0]} {only_a}, only on {device} {only_b},"
                f" different {differ}"
            )
    for device, folder in stores.items():
        if left := temp_files(folder):
            problems.append(f"temp files remain on {device}: {left[:5]}")
    everywhere: dict[str, str] = {}
    for folder in stores.values():
        for sha, path in every_content(folder).items():
            everywhere.setdefault(sha, path)
    for sha, path in sorted(everywhere.items(), key=lambda item: item[1]):
        oaiods_own = f"/{STATE_FOLDER}/" in path and f"/{STATE_FOLDER}/trash/" not in path
        if sha not in ledger.written and sha != EMPTY and not oaiods_own:
            problems.append(f"content never written: {path}")
    for sha, where in ledger.written.items():
        if sha != EMPTY and sha not in ledger.destroyed and sha not in everywhere:
            problems.append(f"lost: the content of {where}")
    in_roots = {sha: path for snap in roots.values() for path, (sha, _x) in snap.items()}
    for sha, path in in_roots.items():
        # an edited content kept as a conflicted copy is no resurrection: the copy preserved a concurrent write of
        # it that another device had not seen when it edited its own copy (sim seed 11: A truncates f, B rewrites f
        # offline and keeps A's content as a copy, C appends to its f still holding A's content)
        kept_copy = CONFLICT_MARK in path and sha not in ledger.deleted
        if sha != EMPTY and sha in ledger.destroyed and sha not in ledger.moved and not kept_copy:
            problems.append(f"came back after a user destroyed it: {path} ({ledger.written.get(sha)})")
    return problems
