"""Commits whose outcome this device does not know (design §4): the process died, or the server's answer was lost.

A journal row outlives every commit that did not end in a known way. At the start of each cycle (not only at the
daemon's start: a connection reset after the server committed is an unknown outcome too) each row is decided:

- **landed** (the server's object is at the commit's stamp, or the hub's version history holds it): that version
  becomes the object's base here, file by file from its manifest. Before this was done, a version another device
  had built on top of it was merged against the older base: a file that device deleted or overwrote looked like
  one this device had added or changed, and came back (as itself or as a conflicted copy);
- **not landed** (the hub's history says so): its partial prefix on storage is deleted;
- **unknown** (a plain oaio server keeps no history and is at another version): treated as not landed, but its
  prefix stays (``gc`` deletes it once it is older than the kept versions), since it may be a version other devices
  still read.

Every decided object is marked dirty so its push looks again; a landed one is due at once (its failure was only
the lost answer), another keeps the backoff of the failure that stopped the commit.

A pull's batch of downloads leaves an ``install`` row from before its renames until its index rows are written
(design §3, §8 invariant 3). A row left when the engine starts means the daemon died in between (a live process
removes it): :func:`recover_installs` looks at each download whose temp file is gone (it was renamed into place).
One with no file at its path was installed and then deleted by the user (or, a folder standing there, installed as
a conflicted copy beside it): recorded as deleted here, so the next commit deletes it instead of the next pull
downloading it again. The server's side of a conflict installed as a conflicted copy makes the server's content
the path's base, as the pull would have: the next pull does not make a second copy, and the local file is
committed over it. A temp file still there (the rename never ran, or a power cut took it back) is a download like
any other: the pull fetches it again and the daemon's sweep removes the temp file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from oaiod.engine.context import EngineContext
from oaiod.engine.manifest import remote_files
from oaiod.engine.plan import UNKNOWN
from oaiod.engine.pull import INSTALL, INSTALLED_AS_COPY, INSTALLED_AT_PATH
from oaiod.engine.push import COMMIT
from oaiod.engine.rows import RowWriter
from oaiod.errors import ValidationError
from oaiod.model import OaiObject, storage_key
from oaiod.server_api import NotFound, PermissionDenied
from oaiod.state.models import STATUS_ACTIVE, STATUS_NEW, JournalRow
from oaiod.storage.errors import StorageError

log = logging.getLogger("oaiod.engine")

LANDED, NOT_LANDED, UNKNOWN_OUTCOME = "was committed", "was not committed", "may not have been committed"


def pending_commits(ctx: EngineContext) -> list[JournalRow]:
    """Journal rows of commits whose outcome is not known yet (cheap: the journal holds a few rows at most)."""
    return [entry for entry in ctx.repo.journal() if entry.op == COMMIT]


def recover_commits(ctx: EngineContext) -> None:
    """Decide every commit of :func:`pending_commits` (see the module docstring); a RemoteError of the listing
    propagates (the cycle is offline and the rows wait for the next one)."""
    entries = pending_commits(ctx)
    if not entries:
        return
    listing = {obj.oaio_id: obj for obj in ctx.api.stampz(None).objects}
    history = "versions" in ctx.api.features()
    for entry in entries:
        try:
            outcome, values = _outcome(ctx, entry, listing.get(entry.oaio_id), history)
        except (ValidationError, NotFound, PermissionDenied) as exc:
            log.warning("%s: cannot tell yet whether commit %s landed (%s)", entry.oaio_id, entry.stamp, exc)
            continue
        row = ctx.repo.get_object(entry.oaio_id)
        if row is not None:
            if outcome == LANDED and values is not None:
                _adopt_base(ctx, entry, values, listing.get(entry.oaio_id))
            if outcome == LANDED and row.status == STATUS_NEW:  # a register/ that landed: registered, not new
                ctx.repo.update_object(entry.oaio_id, status=STATUS_ACTIVE)
            ctx.repo.update_object(entry.oaio_id, local_dirty=True)
            if outcome == LANDED:  # the failure that left the row was only the lost answer: no need to wait
                ctx.repo.retry_errors(entry.oaio_id)
        if outcome == NOT_LANDED:
            _delete_prefix(ctx, entry, row.csh_id if row is not None else None)
        ctx.repo.journal_remove(entry.id)
        log.info("%s: interrupted commit %s %s", entry.oaio_id, entry.stamp, outcome)
        ctx.repo.add_history(entry.oaio_id, "recover", detail=f"commit {entry.stamp} {outcome}")


def recover_installs(ctx: EngineContext) -> int:
    """Settle the ``install`` rows a killed daemon left (see the module docstring); run once when the engine starts,
    before the sweep of stale temp files, since a temp file still there is what says a rename never ran. Returns the
    number of files recorded as deleted here."""
    deleted = 0
    for entry in ctx.repo.journal():
        if entry.op != INSTALL:
            continue
        try:
            deleted += _settle_installs(ctx, entry)
        except OSError as exc:  # the folder cannot be read now: the downloads count as never installed (as before)
            log.warning("%s: cannot check the downloads of an interrupted pull (%s)", entry.oaio_id, exc)
        ctx.repo.journal_remove(entry.id)
    return deleted


def _settle_installs(ctx: EngineContext, entry: JournalRow) -> int:
    root = str(entry.data.get("root", ""))
    row = ctx.repo.get_object(entry.oaio_id)
    if row is None or not root or str(Path(row.local_root or "")) != root or not Path(root).is_dir():
        return 0  # removed, moved or not mounted: nothing here to tell apart
    rows = RowWriter(ctx.repo, entry.oaio_id)
    gone: list[str] = []
    for rel, temp, sha, executable, *rest in entry.data.get("files", []):
        if os.path.lexists(temp):
            continue  # never renamed into place: fetched again
        if (rest[0] if rest else INSTALLED_AT_PATH) == INSTALLED_AS_COPY:
            rows.set_synced(rel, sha, bool(executable))  # the server's side is in a copy: the local file wins rel
        elif not _file_at(f"{root}/{rel}"):  # deleted since, or (a folder there) installed as a copy beside it
            rows.absent(rel, sha, bool(executable))
            gone.append(rel)
    rows.flush()
    if gone:
        ctx.repo.update_object(entry.oaio_id, local_dirty=True)
        shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
        ctx.repo.add_history(entry.oaio_id, "recover", detail=f"deleted here after a pull installed them: {shown}")
        log.info("%s: %d file(s) downloaded before a crash and deleted since: %s", entry.oaio_id, len(gone), shown)
    return len(gone)


def _file_at(path: str) -> bool:
    """Something other than a folder at ``path`` (a file, or a symlink the user put there)."""
    return os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path))


def _outcome(
    ctx: EngineContext, entry: JournalRow, server: OaiObject | None, history: bool
) -> tuple[str, dict[str, Any] | None]:
    """Whether ``entry``'s version is on the server, with that version's values when it is."""
    if server is not None and server.client_stamp == entry.stamp:
        return LANDED, server.client_values
    if server is None:
        return NOT_LANDED, None  # never registered, or deleted since: nothing of it is read any more
    if not history:
        return UNKNOWN_OUTCOME, None
    found = next((v for v in ctx.api.versions(entry.oaio_id, stamp=entry.stamp) if v.stamp == entry.stamp), None)
    return (LANDED, found.values) if found is not None else (NOT_LANDED, None)


def _adopt_base(ctx: EngineContext, entry: JournalRow, values: dict[str, Any], server: OaiObject | None) -> None:
    """The landed version becomes the base: each file's synced content is what that version's manifest says (a
    version without a usable manifest leaves the base as it was: the next pull hashes what it downloads)."""
    files = remote_files(values, entry.stamp)
    if any(remote.sha256 is UNKNOWN for remote in files.values()):
        log.warning("%s: version %s has no usable manifest; merged as unknown", entry.oaio_id, entry.stamp)
        return
    base = {path: (str(remote.sha256), remote.executable) for path, remote in files.items()}
    current = server if server is not None and server.client_stamp == entry.stamp else None
    ctx.repo.set_base(entry.oaio_id, entry.stamp, values, base, current)


def _delete_prefix(ctx: EngineContext, entry: JournalRow, row_csh: str | None) -> None:
    csh_id = entry.data.get("csh_id") or row_csh
    if not csh_id:
        return
    try:
        ctx.backend(csh_id).delete_prefix(storage_key(entry.oaio_id, entry.stamp))
    except StorageError as exc:
        log.warning("%s: cannot delete the uncommitted version %s (%s); gc deletes it", entry.oaio_id, entry.stamp, exc)
