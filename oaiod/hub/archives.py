"""Folder downloads as zip archives, prepared in the background, then polled and downloaded (prepare-then-poll).

A caller asks for the archive of a folder (a folder object, or a sub-folder of one) of one version — the newest
when none is named, pinned at the request — and gets an archive id; the status answers ``preparing`` (with the
bytes done and to do), ``prepared`` or ``error``; a prepared archive is downloaded as a file. Guarantees:

- **Rights**: an archive is bound to the user whose right it relies on — the requester, who needs read on the
  object (any subscription, as ``download/`` does), or a share link's creator (:mod:`oaiod.hub.links` checks the
  link). Every status and download checks that right again: a user who lost it gets 404, as for an unknown id;
  an archive of a deleted object, or of a wiped user, goes with them (foreign keys).
- **Bounded disk**: entries are *stored* (no compression), so an archive's size is known before it is built
  (:func:`zip_size_bound`). All archives kept at once (preparing or prepared, not expired) take at most
  ``HubSettings.archive_disk_limit`` bytes: a request beyond it is refused before anything is written — 413 when
  the archive alone is larger, else 429 (the others expire). Checked and recorded in a serialised transaction,
  so hub processes on one database do not overshoot together. Stored entries also make the hub's CPU the least
  of the costs: synced folders are mostly photos, archives and documents that deflate gains little on.
- **Bounded time**: a build that is not done ``archive_time_limit`` seconds after the request stops with
  ``error``. A build whose process died stops beating (``updated``); a minute later it counts as ``error`` and
  the same request starts another.
- **Expiring**: a prepared archive is deleted ``archive_ttl`` seconds after it was prepared (swept lazily, at
  most every :data:`SWEEP_EVERY` seconds, and at start); a file in the archive folder that no row names goes too.
- **Safe names**: the zip holds ``TOP/PATH`` for each file, ``TOP`` the folder's name made a single safe
  component and ``PATH`` a path :func:`oaiod.model.validate_file_path` accepted (relative, no ``..``).
- **Content**: the builder holds every content it reads (:meth:`BlobStore.hold`), so a version replaced or a blob
  deleted while it runs cannot cut it.

Archives live in ``<data_dir>/archives/`` (0700, files 0600) of the hub process that built them: hub processes on
several machines need that folder shared, or the load balancer to keep a client on one hub.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as _dt
import logging
import os
import secrets
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from oaiod.hub.blobstore import BlobStore
from oaiod.hub.db import FolderArchive, stamp_add
from oaiod.hub.errors import Conflict, HubError, NotFound, RateLimited, TooLarge
from oaiod.hub.service import HubService
from oaiod.hub.versionfiles import Selection, newest_stamp, select
from oaiod.model import NO_ACCESS_RIGHT, now_stamp, stamp_to_datetime

log = logging.getLogger("oaiod.hub.archives")

PREPARING, PREPARED, ERROR, NOT_PREPARED = "preparing", "prepared", "error", "not prepared"
SWEEP_EVERY = 60.0  #: seconds between two sweeps of expired archives
BEAT_EVERY = 2.0  #: seconds between two progress updates of a running build (its heartbeat)
STALE_AFTER = 60.0  #: a running build silent this long died with its process
BLOCK = 1024 * 1024
ENTRY_OVERHEAD = 200  #: bytes a stored zip64 entry adds beside twice its name (headers, descriptor, extras)
END_OVERHEAD = 200  #: bytes of the zip's end records


def zip_size_bound(selection: Selection) -> int:
    """An upper bound of the stored zip of ``selection`` (exact sizes of the content, headers bounded)."""
    names = sum(2 * len(selection.entry(file).encode()) + ENTRY_OVERHEAD for file in selection.files)
    return sum(file.size for file in selection.files) + names + END_OVERHEAD


@dataclass(frozen=True)
class Holder:
    """Whose right an archive relies on: a user, or a share link's creator (``link_id``)."""

    username: str
    link_id: str | None = None


class Archives:
    """Every archive operation of one hub process (thread-safe); builds run on ``archive_builders`` threads."""

    def __init__(self, service: HubService, store: BlobStore) -> None:
        self.service = service
        self.store = store
        self.settings = service.settings
        self.root = service.settings.data_dir / "archives"
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.builders = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, service.settings.archive_builders), thread_name_prefix="oaiod-archive"
        )
        self._last_sweep = 0.0

    def close(self) -> None:
        """Stop taking builds; running ones stop at their next heartbeat (their rows then say ``error``)."""
        self._closing = True
        self.builders.shutdown(wait=False, cancel_futures=True)

    _closing = False

    def path(self, archive_id: str) -> Path:
        return self.root / f"{archive_id}.zip"

    # -- requests ------------------------------------------------------------------------------------------------

    def prepare(self, holder: Holder, oaio_id: str, stamp: str, path: str) -> dict[str, Any]:
        """Start (or find) the archive of ``path`` (a folder; ``""`` the whole object) of version ``stamp``
        (``""``: the newest, pinned now); its status. 404 for what the holder may not read or does not exist, 409
        for a version whose files are not on the hub, 413/429 beyond the disk limit (module docstring)."""
        self.sweep()
        with self.service.serialised() as (db, now):
            _check_read(db, holder.username, oaio_id)
            stamp = stamp or newest_stamp(db, oaio_id)
            selection = select(db, oaio_id, stamp, path)
            if not selection.is_folder:
                raise NotFound(f"{path!r} is a file of {oaio_id!r}, not a folder: download it as it is")
            found = self._live(db, holder, oaio_id, stamp, path, now)
            if found is not None:
                return self._describe(found, now)
            size = zip_size_bound(selection)
            self._check_room(db, size, now)
            row = FolderArchive(
                id=secrets.token_urlsafe(16), oaio_id=oaio_id, stamp=stamp, path=path, username=holder.username,
                link_id=holder.link_id, state=PREPARING, done=0, total=sum(f.size for f in selection.files),
                size=size, error="", created=now, updated=now,
                expires=stamp_add(now, self.settings.archive_time_limit + self.settings.archive_ttl),
            )  # fmt: skip
            db.add(row)
        self.builders.submit(self._build, row.id, selection, now)
        log.info("archive %s: %d files (%d bytes) of %s/%s %r for %s queued", row.id, len(selection.files),
                 row.total, oaio_id, stamp, path, holder.username)  # fmt: skip
        return self._describe(row, now)

    def status(self, holder: Holder, archive_id: str) -> dict[str, Any]:
        with self.service.sessions() as db:
            return self._describe(self._visible(db, holder, archive_id), now_stamp())

    def find(self, holder: Holder, oaio_id: str, stamp: str, path: str) -> dict[str, Any]:
        """The status of the live archive of this folder and version, or ``not prepared`` when there is none."""
        with self.service.sessions() as db:
            _check_read(db, holder.username, oaio_id)
            now = now_stamp()
            row = self._live(db, holder, oaio_id, stamp or newest_stamp(db, oaio_id), path, now)
            if row is None:
                return {"status": NOT_PREPARED, "oaio_id": oaio_id, "path": path, "stamp": stamp}
            return self._describe(row, now)

    def open(self, holder: Holder, archive_id: str) -> tuple[Path, str]:
        """The file of a prepared archive and the name to download it as; 404 otherwise (409 while preparing)."""
        with self.service.sessions() as db:
            row = self._visible(db, holder, archive_id)
            state = self._state(row, now_stamp())
            if state != PREPARED:
                raise Conflict(f"archive {archive_id} is {state}, not prepared", status=state)
            selection_top = _top_name(db, row)
        path = self.path(archive_id)
        if not path.is_file():
            raise NotFound(f"archive {archive_id} is not on this hub (it expired, or another hub machine built it)")
        return path, f"{selection_top}.zip"

    def drop(self, holder: Holder, archive_id: str) -> bool:
        """Forget an archive (a running build stops at its next heartbeat) and delete its file."""
        with self.service.serialised() as (db, _now):
            row = self._visible(db, holder, archive_id)
            db.delete(row)
        self._unlink(archive_id)
        return True

    # -- rows ----------------------------------------------------------------------------------------------------

    def _visible(self, db: Session, holder: Holder, archive_id: str) -> FolderArchive:
        row = db.get(FolderArchive, archive_id)
        if row is None or row.username != holder.username or row.link_id != holder.link_id or row.expires < now_stamp():
            raise NotFound(f"no archive {archive_id!r} of {holder.username!r}")
        _check_read(db, holder.username, row.oaio_id)
        return row

    def _live(self, db: Session, holder: Holder, oaio_id: str, stamp: str, path: str, now: str) -> Any:
        query = sa.select(FolderArchive).where(
            FolderArchive.oaio_id == oaio_id, FolderArchive.stamp == stamp, FolderArchive.path == path,
            FolderArchive.username == holder.username, FolderArchive.expires >= now,
            FolderArchive.link_id.is_(None) if holder.link_id is None else FolderArchive.link_id == holder.link_id,
        )  # fmt: skip
        for row in db.scalars(query.order_by(FolderArchive.created.desc())):
            if self._state(row, now) != ERROR:
                return row
        return None

    def _check_room(self, db: Session, size: int, now: str) -> None:
        limit = self.settings.archive_disk_limit
        if size > limit:
            raise TooLarge(f"the archive would take {size} bytes; the hub keeps archives of at most {limit}",
                           limit=limit, size=size)  # fmt: skip
        kept = sa.select(FolderArchive).where(FolderArchive.expires >= now, FolderArchive.state != ERROR)
        taken = sum(row.size for row in db.scalars(kept) if self._state(row, now) != ERROR)
        if taken + size > limit:
            raise RateLimited(
                f"archives being kept take {taken} of the hub's {limit} bytes; this one needs {size}: retry later",
                retry_after=int(min(self.settings.archive_ttl, 600)),
            )

    def _state(self, row: FolderArchive, now: str) -> str:
        if row.state != PREPARING:
            return row.state
        deadline = stamp_add(row.created, self.settings.archive_time_limit + 30)
        silent = row.updated != row.created and stamp_add(row.updated, STALE_AFTER) < now
        return ERROR if now > deadline or silent else PREPARING

    def _describe(self, row: FolderArchive, now: str) -> dict[str, Any]:
        state = self._state(row, now)
        stopped = "the build stopped: its hub process ended or it ran out of time"
        error = row.error or (stopped if state == ERROR else "")
        return {
            "id": row.id, "oaio_id": row.oaio_id, "stamp": row.stamp, "path": row.path, "status": state,
            "progress": round(row.done / row.total, 4) if row.total else (1.0 if state == PREPARED else 0.0),
            "done": row.done, "total": row.total, "size": row.size, "error": error, "created": row.created,
            "expires": row.expires,
        }  # fmt: skip

    # -- building ------------------------------------------------------------------------------------------------

    def _build(self, archive_id: str, selection: Selection, created: str) -> None:
        """Write the zip beside its final name, then publish it (rename) and mark the row prepared."""
        deadline = time.monotonic() + self.settings.archive_time_limit - _age(created)
        part = self.root / f"{archive_id}.part"
        contents = sorted({file.sha256 for file in selection.files})
        held = self.store.hold(contents, trust_names=True)
        try:
            if not all(held):
                raise NotFound("files of this version were deleted before the archive was built")
            self._beat(archive_id, 0)
            self._write(archive_id, selection, part, deadline)
            size = part.stat().st_size
            os.replace(part, self.path(archive_id))
            if not self._finish(archive_id, size):
                self._unlink(archive_id)
                return
            log.info("archive %s: prepared, %d bytes", archive_id, size)
        except _Cancelled:
            log.info("archive %s: dropped while it was built", archive_id)
        except Exception as exc:
            reason = exc.reason if isinstance(exc, HubError) else f"the hub could not build it: {exc}"
            log.warning("archive %s: failed: %s", archive_id, reason)
            self._fail(archive_id, reason[:300])
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            for sha256, there in zip(contents, held, strict=True):
                if there:
                    self.store.release_download(sha256)

    def _write(self, archive_id: str, selection: Selection, part: Path, deadline: float) -> None:
        when = _zip_time(selection.stamp)
        done, beat = 0, time.monotonic()
        descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
            for file in selection.files:
                info = zipfile.ZipInfo(selection.entry(file), when)
                info.external_attr = 0o644 << 16
                with (
                    archive.open(info, "w", force_zip64=True) as entry,
                    contextlib.closing(self.store.content.open(file.sha256)) as source,
                ):
                    while block := source.read(BLOCK):
                        entry.write(block)
                        done += len(block)
                        if time.monotonic() - beat >= BEAT_EVERY:
                            self._check_running(deadline)
                            self._beat(archive_id, done)
                            beat = time.monotonic()
            self._check_running(deadline)
        self._beat(archive_id, done)

    def _check_running(self, deadline: float) -> None:
        if self._closing:
            raise HubError("the hub stopped while building it")
        if time.monotonic() > deadline:
            raise HubError(f"building it took longer than the hub's limit of {self.settings.archive_time_limit:g} s")

    def _beat(self, archive_id: str, done: int) -> None:
        with self.service.sessions.begin() as db:
            changed = db.execute(
                sa.update(FolderArchive)
                .where(FolderArchive.id == archive_id, FolderArchive.state == PREPARING)
                .values(done=done, updated=now_stamp())
            ).rowcount  # type: ignore[attr-defined]
        if not changed:
            raise _Cancelled

    def _finish(self, archive_id: str, size: int) -> bool:
        now = now_stamp()
        with self.service.sessions.begin() as db:
            changed = db.execute(
                sa.update(FolderArchive)
                .where(FolderArchive.id == archive_id, FolderArchive.state == PREPARING)
                .values(state=PREPARED, size=size, done=FolderArchive.total, updated=now,
                        expires=stamp_add(now, self.settings.archive_ttl))
            ).rowcount  # type: ignore[attr-defined]  # fmt: skip
        return bool(changed)

    def _fail(self, archive_id: str, reason: str) -> None:
        with self.service.sessions.begin() as db:
            db.execute(
                sa.update(FolderArchive)
                .where(FolderArchive.id == archive_id)
                .values(state=ERROR, error=reason, updated=now_stamp())
            )
        self._unlink(archive_id)

    def _unlink(self, archive_id: str) -> None:
        for path in (self.path(archive_id), self.root / f"{archive_id}.part"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- expiry --------------------------------------------------------------------------------------------------

    def sweep(self, *, force: bool = False) -> int:
        """Delete expired archives (rows and files) and files no row names; how many went. Lazy: at most every
        :data:`SWEEP_EVERY` seconds unless ``force``."""
        if not force and time.monotonic() - self._last_sweep < SWEEP_EVERY:
            return 0
        self._last_sweep = time.monotonic()
        now = now_stamp()
        with self.service.sessions.begin() as db:
            expired = list(db.scalars(sa.select(FolderArchive.id).where(FolderArchive.expires < now)))
            if expired:
                db.execute(sa.delete(FolderArchive).where(FolderArchive.id.in_(expired)))
            known = set(db.scalars(sa.select(FolderArchive.id)))
        for archive_id in expired:
            self._unlink(archive_id)
        gone = 0
        horizon = time.time() - STALE_AFTER  # a build's first bytes may land before its row is visible here
        for path in self.root.iterdir():
            archive_id = path.name.rsplit(".", 1)[0]
            with contextlib.suppress(FileNotFoundError):
                if archive_id not in known and path.stat().st_mtime < horizon:
                    path.unlink()
                    gone += 1
        if expired or gone:
            log.info("archives: %d expired, %d files removed", len(expired), gone)
        return len(expired)


class _Cancelled(Exception):
    """The archive's row went (dropped, or its object deleted) while it was built."""


def _check_read(db: Session, username: str, oaio_id: str) -> None:
    if HubService._right(db, oaio_id, username) == NO_ACCESS_RIGHT:
        raise NotFound(f"no object {oaio_id!r} that {username!r} may read")


def _top_name(db: Session, row: FolderArchive) -> str:
    from oaiod.hub.versionfiles import safe_component, version_paths

    if row.path:
        return safe_component(row.path.rsplit("/", 1)[-1], "folder")
    try:
        return version_paths(db, row.oaio_id, row.stamp)[1]
    except NotFound:
        return "folder"


def _age(stamp: str) -> float:
    return max(0.0, (_dt.datetime.now(_dt.UTC) - stamp_to_datetime(stamp)).total_seconds())


def _zip_time(stamp: str) -> tuple[int, int, int, int, int, int]:
    moment = stamp_to_datetime(stamp)
    return (max(moment.year, 1980), moment.month, moment.day, moment.hour, moment.minute, moment.second)
