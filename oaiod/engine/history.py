"""Per-file history: what each version changed, file by file, and which device made it (``ctl history``).

A version's change is the difference of two manifests, the base version's and the new one's: a path only in the
new one was **added**, only in the base **deleted**, in both with another content **changed**; a deleted and an
added path of one content (that content once on either side) were **moved**. **Conflict** rows are written where
the conflicted copy is made (:mod:`oaiod.engine.pull`). A push records its commit (this device), a pull the
version it merged (the device that committed it: when several versions arrive at once, the newest one's device
stands for all of them). A hash the manifest does not know (a version the published client made has none) is
taken from the index, where this device hashed what it downloaded; one still unknown tells nothing: such a path
in both versions is left out rather than reported as changed.

The rows go to the state database's ``history`` table, beside the object events (held, confirm, add…); the
version totals (``commit``, ``pull``) stay there for the log but are not part of what ``ctl history`` shows.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oaiod.engine.context import EngineContext, EngineError
from oaiod.engine.files import locate_file
from oaiod.engine.manifest import remote_files
from oaiod.engine.plan import UNKNOWN
from oaiod.state.models import STATUS_ACTIVE, STATUS_HELD, STATUS_NEW
from oaiod.state.repo import StateRepo

ADDED, CHANGED, DELETED, MOVED, CONFLICT = "added", "changed", "deleted", "moved", "conflict"
#: per-version totals: in the table, not in ``ctl history``
VERSION_TOTALS = ("commit", "pull")
#: rows kept in the history table (the oldest go at gc)
KEEP_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class FileChange:
    action: str
    path: str
    detail: str = ""


def file_changes(base: Mapping[str, str | None], new: Mapping[str, str | None]) -> list[FileChange]:
    """What changed from ``base`` to ``new`` (path -> sha256, None when unknown), sorted by path."""
    added = [path for path in new if path not in base]
    deleted = [path for path in base if path not in new]
    changes = [
        FileChange(CHANGED, path)
        for path, sha in new.items()
        if path in base and sha is not None and base[path] is not None and base[path] != sha
    ]
    gone = Counter(base[path] for path in deleted if base[path] is not None)
    came = Counter(new[path] for path in added if new[path] is not None)
    moved_from = {base[path]: path for path in deleted if base[path] is not None and gone[base[path]] == 1}
    moves = {path: moved_from[sha] for path in added if (sha := new[path]) in moved_from and came[sha] == 1}
    changes += [FileChange(MOVED, path, f"from {source}") for path, source in moves.items()]
    changes += [FileChange(ADDED, path) for path in added if path not in moves]
    sources = set(moves.values())
    changes += [FileChange(DELETED, path) for path in deleted if path not in sources]
    return sorted(changes, key=lambda change: change.path)


def manifest_hashes(values: Mapping[str, Any] | None, stamp: str) -> dict[str, str | None]:
    """path -> sha256 (None when the version's manifest does not say) of a version's values; empty for none."""
    if not values:
        return {}
    return {
        path: None if file.sha256 is UNKNOWN else str(file.sha256)
        for path, file in remote_files(dict(values), stamp).items()
    }


def filled_from_index(repo: StateRepo, oaio_id: str, hashes: Mapping[str, str | None]) -> dict[str, str | None]:
    """``hashes`` with each unknown one taken from the index (the synced content of that path: a file this device
    downloaded and hashed), so a version of the published client reports what changed too. Without an unknown
    one, ``hashes`` as they are (the index is not read)."""
    if None not in hashes.values():
        return dict(hashes)
    synced = {row.path: row.synced_sha256 for row in repo.iter_files(oaio_id)}
    return {path: sha if sha is not None else synced.get(path) for path, sha in hashes.items()}


def record_version(
    repo: StateRepo,
    oaio_id: str,
    base: Mapping[str, str | None],
    new: Mapping[str, str | None],
    device: str,
    *,
    skip: Iterable[str] = (),
) -> int:
    """Write a history row per file the version changed (``skip``: paths not this version's to report); the count."""
    skipped = frozenset(skip)
    changes = [change for change in file_changes(base, new) if change.path not in skipped]
    repo.add_history_rows(oaio_id, [(change.action, change.path, change.detail) for change in changes], device)
    return len(changes)


def scopes_of(ctx: EngineContext, path: Path) -> list[tuple[str, str]]:
    """The ``(oaio_id, relative path)`` scopes :meth:`StateRepo.history` narrows to for ``path``: the object whose
    folder holds it with the path inside ("" for the folder itself), and every object whose folder lies under it
    (a folder added inside the client root is an object of its own). EngineError when ``path`` touches none."""
    scopes: list[tuple[str, str]] = []
    try:
        row, rel = locate_file(ctx, path)
        scopes.append((row.oaio_id, rel))
    except EngineError:
        pass
    target = os.path.realpath(path)
    for row in ctx.repo.objects(STATUS_ACTIVE, STATUS_NEW, STATUS_HELD, values=False):
        folder = os.path.realpath(row.local_root) if row.local_root else ""
        if folder and folder.startswith(target.rstrip("/") + "/") and (row.oaio_id, "") not in scopes:
            scopes.append((row.oaio_id, ""))
    if not scopes:
        raise EngineError(f"{path} is not a synced folder, inside one, or a folder holding one")
    return scopes
