"""Empty folders of a version (design §1, §5): the manifest's ``dirs``, merged three-way like files.

A folder that holds files exists wherever its files do; only an empty one needs a word of its own. The index
records the empty folders it sees (``empty_dirs``), a commit lists them, and a pull compares the server's list with
the base version's: a folder new on the server is made here, and one the server's version dropped is removed here
if it is still empty — a folder the user filled meanwhile stays with what it holds (nothing in an empty folder can
be lost by removing it). A folder made or removed only here changes the local list, so the next push commits it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from oaiod.engine.context import EngineContext
from oaiod.engine.localfs import LocalFsError, UnsafePath, is_folder, make_parents
from oaiod.engine.manifest import remote_dirs
from oaiod.model import OaiObject
from oaiod.state.models import KIND_FOLDER, KIND_ROOT, ObjectRow

log = logging.getLogger("oaiod.engine.dirs")


def merge_remote_dirs(ctx: EngineContext, row: ObjectRow, remote: OaiObject) -> None:
    """Make the empty folders the server's version added since the base, remove those it dropped (still empty
    here), and record both in the index. Nothing when the server's manifest does not describe its version (the
    published client changed it): its folders are unknown, and nothing is removed on a guess."""
    if row.kind not in (KIND_ROOT, KIND_FOLDER) or not row.local_root:
        return
    root = Path(row.local_root)
    if not row.synced_stamp and not os.path.lexists(root):
        try:
            root.mkdir(parents=True)  # a folder new here with nothing in it yet (or only empty folders) appears too
        except OSError as exc:
            log.warning("cannot make the folder %s: %s", root, exc.strerror)
            return
    wanted = remote_dirs(remote.client_values, remote.client_stamp)
    if wanted is None:
        return
    base = remote_dirs(row.synced_values, row.synced_stamp) or frozenset()
    rules = ctx.ignore_rules(root)
    made: list[str] = []
    removed: list[str] = []
    for rel in sorted(base - wanted, reverse=True):  # deepest first: a parent may empty with its child
        if not rules.covers(rel):
            removed += _remove_empty(root, rel, wanted)
    for rel in sorted(wanted - base):
        if not rules.covers(rel) and _make(root, rel):  # ignored or excluded here: not made (pushes carry it on)
            made.append(rel)
    if made or removed:
        ctx.repo.change_empty_dirs(row.oaio_id, add=made, remove=removed)


def restore_dirs(ctx: EngineContext, row: ObjectRow, under: str) -> list[str]:
    """Make the synced version's empty folders at or under ``under`` that are missing here (a path included again
    after an exclusion); the folders made."""
    root = Path(row.local_root or "")
    base = remote_dirs(row.synced_values, row.synced_stamp) or frozenset()
    made = [rel for rel in sorted(base) if (rel == under or rel.startswith(under + "/")) and _make(root, rel)]
    if made:
        ctx.repo.change_empty_dirs(row.oaio_id, add=made)
    return made


def _make(root: Path, rel: str) -> bool:
    """Make the empty folder ``root/rel``; True when made. Something already there — a folder (the index knows
    whether it is empty), a file or a symlink — is left alone: the next push lists what is there."""
    try:
        os.mkdir(make_parents(root, rel))
    except FileExistsError:
        return False
    except (UnsafePath, LocalFsError, OSError) as exc:
        log.warning("cannot make the empty folder %s: %s", root / rel, exc)
        return False
    return True


def _remove_empty(root: Path, rel: str, wanted: frozenset[str]) -> list[str]:
    """Remove ``root/rel`` if it is an empty folder, then each parent it leaves empty (never the root, never one
    the server's version lists); the relative paths removed."""
    removed: list[str] = []
    while rel and rel not in wanted:
        path = root / rel
        if not is_folder(path):
            break
        try:
            path.rmdir()  # fails on a folder that is not empty: the user put something there, it stays
        except OSError:
            break
        removed.append(rel)
        rel = rel.rpartition("/")[0]
    return removed
