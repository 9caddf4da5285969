"""Folder renames found in a pull (issue 13 §1): a folder the server's version deleted whose files arrive, all of them
and nothing else, under another folder that is new here, is renamed here instead — one rename, no copy, no download.

Pure planning (no disk, no database): :func:`find_folder_moves` pairs such folders by the manifest they hold (each
file's path inside the folder, sha256, executable bit and mtime). The caller then checks the old folder on disk —
it must hold exactly its indexed files, each still as indexed, and no other entry — and renames it with a
no-replace rename (:func:`oaiod.engine.localfs.move_folder_if_as_indexed`); a pair it cannot move falls back to
the per-file steps (local copies, :mod:`oaiod.engine.localcopy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from oaiod.state.repo import FileStat

#: ``(path inside the folder, sha256, executable, mtime_ns)`` of every file of a folder
Signature = frozenset[tuple[str, str, bool, int]]


@dataclass(frozen=True, slots=True)
class Leaving:
    """A local file the pull deletes (the server deleted it, it is unchanged here), as indexed."""

    sha256: str
    executable: bool
    stat: FileStat


@dataclass(frozen=True, slots=True)
class Arriving:
    """A server file new here (no index row), of known content."""

    sha256: str
    executable: bool
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class FolderMove:
    """Rename ``old`` to ``new``: ``files`` maps each path inside the folder to its leaving file."""

    old: str
    new: str
    files: dict[str, Leaving]


def find_folder_moves(
    leaving: Mapping[str, Leaving], arriving: Mapping[str, Arriving], remote_paths: Iterable[str]
) -> list[FolderMove]:
    """Pairs of folders (``old`` → ``new``) with equal signatures: ``old`` has no file in the server's version
    (``remote_paths``) and every indexed file under it leaves; every server file under ``new`` arrives. The
    shallowest pairs win; a folder is in one pair at most, and never one inside the other."""
    if not leaving or not arriving:
        return []
    has_remote: set[str] = set()
    not_all_new: set[str] = set()
    new_sig: dict[str, set[tuple[str, str, bool, int]]] = {}
    for path in remote_paths:
        file = arriving.get(path)
        for folder in _folders_of(path):
            has_remote.add(folder)
            if file is None:
                not_all_new.add(folder)
            elif folder not in not_all_new:
                entry = (path[len(folder) + 1 :], file.sha256, file.executable, file.mtime_ns)
                new_sig.setdefault(folder, set()).add(entry)
    old_sig: dict[str, set[tuple[str, str, bool, int]]] = {}
    for path, gone in leaving.items():
        for folder in _folders_of(path):
            if folder not in has_remote:
                entry = (path[len(folder) + 1 :], gone.sha256, gone.executable, gone.stat.mtime_ns)
                old_sig.setdefault(folder, set()).add(entry)
    by_signature: dict[Signature, list[str]] = {}
    for folder, sig in new_sig.items():
        if folder not in not_all_new:
            by_signature.setdefault(frozenset(sig), []).append(folder)
    moves: list[FolderMove] = []
    used_old: list[str] = []
    used_new: list[str] = []
    for old in sorted(old_sig, key=lambda folder: (folder.count("/"), folder)):
        if _inside_any(old, used_old):
            continue
        for new in sorted(by_signature.get(frozenset(old_sig[old]), ()), key=lambda f: (f.count("/"), f)):
            if _inside_any(new, used_new) or _within(new, old) or _within(old, new):
                continue
            files = {rel: leaving[f"{old}/{rel}"] for rel, _sha, _exec, _mtime in old_sig[old]}
            moves.append(FolderMove(old, new, files))
            used_old.append(old)
            used_new.append(new)
            break
    return moves


def _folders_of(path: str) -> list[str]:
    """Every folder above ``path`` (not the root): ``a/b/c`` → ``a``, ``a/b``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: depth + 1]) for depth in range(len(parts))]


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def _inside_any(path: str, folders: list[str]) -> bool:
    return any(_within(path, folder) for folder in folders)
