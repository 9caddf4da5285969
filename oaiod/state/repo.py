"""``StateRepo``: the typed face of the state database that the engine and the daemon use.

Every method opens a short transaction of its own unless it is given a session; readers of file rows stream them
(``yield_per``) so memory stays bounded however many files an object holds. SQLite errors while in use become
:class:`~oaiod.state.db.StateError`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session, sessionmaker

from oaiod.errors import FailureKind, describe, failure_kind
from oaiod.model import OaiObject, now_stamp, stamp_add
from oaiod.state.backoff import BACKOFF, WAITED_OUT_BY_FILES
from oaiod.state.db import DB_FILE, StateError, open_database
from oaiod.state.models import (
    STATUS_ACTIVE,
    STATUS_HELD,
    STATUS_NEW,
    ConflictRow,
    CursorRow,
    EmptyDirRow,
    ErrorRow,
    ExcludedFolderRow,
    ExcludedPathRow,
    FileRow,
    HistoryRow,
    JournalRow,
    ObjectRow,
    TrashRow,
)

STREAM_BATCH = 2000
#: the JSON columns of an object row (a folder's values hold its manifest)
_VALUE_COLUMNS = (ObjectRow.client_values, ObjectRow.server_values, ObjectRow.synced_values, ObjectRow.local_values)
_STAT_QUERY = "SELECT path, size, mtime_ns, inode, present FROM files WHERE oaio_id = ?"
_SCAN_QUERY = "SELECT path, size, mtime_ns, inode, present, ignored, executable FROM files WHERE oaio_id = ?"
_PUSH_QUERY = (
    "SELECT path, present, size, mtime_ns, sha256, executable, synced_sha256, synced_executable FROM files"
    " WHERE oaio_id = ?"
)

#: ``(path, present, size, mtime_ns, sha256, executable, synced_sha256, synced_executable)`` as a push reads it
PushRow = tuple[str, int, int, int, str | None, int, str | None, int]
#: ``(path, size, mtime_ns, inode, present)`` as the rescan compares it
StatRow = tuple[str, int, int, int, bool]
#: ``(path, size, mtime_ns, inode, present, ignored, executable)``: a StatRow, whether the row is frozen as ignored,
#: and the indexed executable bit (a chmod changes neither size nor mtime)
ScanRow = tuple[str, int, int, int, bool, bool, bool]


#: ``(sha256, absolute path, size, mtime_ns, inode)`` of a file the device holds, as indexed: a candidate source of a
#: local copy (checked on disk and verified by hash before use)
LocalSource = tuple[str, str, int, int, int]
_SOURCES_IN_FILES = (
    "SELECT f.sha256, f.oaio_id, f.path, f.size, f.mtime_ns, f.inode FROM files f"
    " WHERE f.present AND NOT f.ignored AND f.sha256 IN ({})"
)
_SOURCES_IN_TRASH = "SELECT sha256, path, size, mtime_ns, inode FROM trash WHERE sha256 IN ({})"
#: hashes per lookup query (SQLite allows 999 parameters in old builds)
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class FileStat:
    """The stat part of a file row, as the scanner compares it."""

    size: int
    mtime_ns: int
    inode: int
    present: bool = True
    ignored: bool = False
    executable: bool | None = None  #: None: not compared


def _rowcount(result: sa.Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched: it gives a CursorResult, which ``Session.execute`` types as a Result."""
    return cast("sa.CursorResult[Any]", result).rowcount


def prefix_filter(prefix: str) -> sa.ColumnElement[bool]:
    """Rows at ``prefix`` or under the folder ``prefix`` (index-friendly range, ``0`` sorts right after ``/``)."""
    if not prefix:
        return sa.true()
    return sa.or_(FileRow.path == prefix, sa.and_(FileRow.path >= prefix + "/", FileRow.path < prefix + "0"))


class StateRepo:
    """The state database of one daemon instance (one server)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / DB_FILE
        self.engine = open_database(self.path)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error; SQL errors become StateError."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except sa.exc.SQLAlchemyError as exc:
            session.rollback()
            raise StateError(f"state database {self.path}: {str(exc).splitlines()[0]}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # -- objects -------------------------------------------------------------------------------------------------

    def get_object(self, oaio_id: str) -> ObjectRow | None:
        with self.session() as s:
            return s.get(ObjectRow, oaio_id)

    def objects(self, *statuses: str, values: bool = True) -> list[ObjectRow]:
        """Objects (few: one per synced folder or data object), by status; all when none is given.

        ``values=False`` leaves the JSON value columns unloaded (reading one raises): a folder's values hold its
        whole manifest, three times, so callers that only need ids, kinds and folders (the rescan, ``status``)
        skip decoding megabytes of JSON.
        """
        with self.session() as s:
            query = sa.select(ObjectRow).order_by(ObjectRow.oaio_id)
            if statuses:
                query = query.where(ObjectRow.status.in_(statuses))
            if not values:
                query = query.options(*(sa.orm.defer(column, raiseload=True) for column in _VALUE_COLUMNS))
            return list(s.scalars(query))

    def objects_of_kind(self, *kinds: str) -> list[ObjectRow]:
        """Objects of ``kinds`` with their values (for apps' data and file objects, whose values are small)."""
        with self.session() as s:
            return list(s.scalars(sa.select(ObjectRow).where(ObjectRow.kind.in_(kinds)).order_by(ObjectRow.oaio_id)))

    def object_names(self) -> dict[str, str]:
        """``oaio_id -> _name`` of every object that has one, read inside SQLite (a folder's values are megabytes:
        ``ctl ls`` must not decode them to show a name)."""
        name = sa.func.json_extract(ObjectRow.client_values, "$._name")
        with self.session() as s:
            found = s.execute(sa.select(ObjectRow.oaio_id, name).where(name.is_not(None)))
            return {oaio_id: str(value) for oaio_id, value in found}

    def has_kind(self, kind: str) -> bool:
        """True when an object of ``kind`` is synced (a cheap check that loads no values)."""
        with self.session() as s:
            return s.scalar(sa.select(ObjectRow.oaio_id).where(ObjectRow.kind == kind).limit(1)) is not None

    _DIRTY = (
        sa.or_(ObjectRow.local_dirty.is_(True), ObjectRow.status == STATUS_NEW),
        ObjectRow.status.in_((STATUS_ACTIVE, STATUS_NEW, STATUS_HELD)),
    )

    def dirty_objects(self) -> list[ObjectRow]:
        """Objects with local changes to push or new ones to register (one indexed query)."""
        with self.session() as s:
            return list(s.scalars(sa.select(ObjectRow).where(*self._DIRTY)))

    def count_dirty_objects(self) -> int:
        """How many :meth:`dirty_objects` there are, without loading their values (``ctl status``, every second
        on the status page)."""
        with self.session() as s:
            return int(s.scalar(sa.select(sa.func.count()).select_from(ObjectRow).where(*self._DIRTY)) or 0)

    def count_local_changes(self, oaio_id: str) -> int:
        """Files of ``oaio_id`` changed here since the synced version (added, edited or deleted), as last indexed:
        one COUNT, the same rule as :func:`oaiod.engine.modes.local_changes`."""
        now = sa.case((FileRow.present, FileRow.sha256), else_=None)
        query = (
            sa.select(sa.func.count())
            .select_from(FileRow)
            .where(FileRow.oaio_id == oaio_id, ~FileRow.ignored, now.is_distinct_from(FileRow.synced_sha256))
        )
        with self.session() as s:
            return int(s.scalar(query) or 0)

    def save_object(self, row: ObjectRow) -> ObjectRow:
        with self.session() as s:
            return s.merge(row)

    def update_object(self, oaio_id: str, **fields: Any) -> None:
        with self.session() as s:
            s.execute(sa.update(ObjectRow).where(ObjectRow.oaio_id == oaio_id).values(**fields))

    def forget_files(self, oaio_id: str) -> None:
        """Drop every file row of an object (it is no longer synced here; the object row stays)."""
        with self.session() as s:
            s.execute(sa.delete(FileRow).where(FileRow.oaio_id == oaio_id))

    def delete_object(self, oaio_id: str) -> None:
        with self.session() as s:
            s.execute(sa.delete(FileRow).where(FileRow.oaio_id == oaio_id))
            s.execute(sa.delete(EmptyDirRow).where(EmptyDirRow.oaio_id == oaio_id))
            s.execute(sa.delete(ExcludedPathRow).where(ExcludedPathRow.oaio_id == oaio_id))
            s.execute(sa.delete(ObjectRow).where(ObjectRow.oaio_id == oaio_id))

    @staticmethod
    def apply_server_object(row: ObjectRow, obj: OaiObject) -> None:
        """Copy every field of the server's object onto ``row`` (the object as last seen on the server)."""
        for name in ("client_stamp", "server_stamp", "client_values", "server_values", "csh_id", "username"):
            setattr(row, name, getattr(obj, name))
        row.device_id, row.app_id, row.csh_access_right = obj.device_id, obj.app_id, obj.csh_access_right

    def set_base(
        self,
        oaio_id: str,
        stamp: str,
        values: dict[str, Any],
        files: Mapping[str, tuple[str, bool]],
        server: OaiObject | None = None,
    ) -> None:
        """Make version ``stamp`` (its ``values`` and ``files``: path -> (sha256, executable)) the object's base, in
        one transaction; local stats stay. A path of the base with no row gets one marked absent here (deleted since);
        an absent path outside it loses its row. Ignored rows stay frozen. ``server``: the server's object, when it is
        at that version."""
        with self.session() as s:
            row = s.get(ObjectRow, oaio_id)
            if row is None:
                return
            pending = dict(files)
            for file in s.scalars(sa.select(FileRow).where(FileRow.oaio_id == oaio_id)):
                if file.ignored:
                    pending.pop(file.path, None)
                    continue
                entry = pending.pop(file.path, None)
                if entry is None and not file.present:
                    s.delete(file)
                    continue
                file.synced_sha256, file.synced_executable = entry if entry is not None else (None, False)
                file.synced_stamp = stamp if entry is not None else ""
            for path, (sha, executable) in pending.items():
                s.add(
                    FileRow(
                        oaio_id=oaio_id,
                        path=path,
                        present=False,
                        sha256=None,
                        synced_sha256=sha,
                        synced_executable=executable,
                        synced_stamp=stamp,
                    )
                )
            if server is not None:
                self.apply_server_object(row, server)
            row.synced_stamp, row.synced_values = stamp, values

    # -- empty folders -------------------------------------------------------------------------------------------

    def empty_dirs(self, oaio_id: str) -> set[str]:
        """The empty folders of an object's root as last indexed (few: a set in memory)."""
        with self.session() as s:
            return set(s.scalars(sa.select(EmptyDirRow.path).where(EmptyDirRow.oaio_id == oaio_id)))

    def change_empty_dirs(self, oaio_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Record folders found empty (``add``) and ones no longer empty or gone (``remove``), in one transaction."""
        added, removed = set(add), set(remove)
        with self.session() as s:
            for start in range(0, len(removed), 500):
                batch = sorted(removed)[start : start + 500]
                s.execute(sa.delete(EmptyDirRow).where(EmptyDirRow.oaio_id == oaio_id, EmptyDirRow.path.in_(batch)))
            if added:
                statement = insert(EmptyDirRow).on_conflict_do_nothing()
                s.execute(statement, [{"oaio_id": oaio_id, "path": path} for path in sorted(added)])

    # -- paths excluded here (selective sync) ----------------------------------------------------------------------

    def excluded_paths(self, oaio_id: str | None = None) -> list[tuple[str, str]]:
        """``(oaio_id, path)`` of every path not synced here (of one object), sorted."""
        query = sa.select(ExcludedPathRow.oaio_id, ExcludedPathRow.path).order_by(
            ExcludedPathRow.oaio_id, ExcludedPathRow.path
        )
        if oaio_id is not None:
            query = query.where(ExcludedPathRow.oaio_id == oaio_id)
        with self.session() as s:
            return [(row[0], row[1]) for row in s.execute(query)]

    def excluded_in_folder(self, local_root: str) -> list[str]:
        """The paths not synced here of the object whose folder is ``local_root``."""
        query = (
            sa.select(ExcludedPathRow.path)
            .join(ObjectRow, ObjectRow.oaio_id == ExcludedPathRow.oaio_id)
            .where(ObjectRow.local_root == local_root)
        )
        with self.session() as s:
            return list(s.scalars(query))

    def set_excluded_path(self, oaio_id: str, path: str, excluded: bool) -> bool:
        """Exclude ``path`` of ``oaio_id`` here, or include it again; False when it already was so."""
        with self.session() as s:
            found = s.get(ExcludedPathRow, (oaio_id, path))
            if excluded == (found is not None):
                return False
            if found is not None:
                s.delete(found)
            else:
                s.add(ExcludedPathRow(oaio_id=oaio_id, path=path, created=now_stamp()))
        return True

    # -- files ---------------------------------------------------------------------------------------------------

    def iter_files(self, oaio_id: str, prefix: str = "", session: Session | None = None) -> Iterator[FileRow]:
        """File rows of an object (under ``prefix``), sorted by path, streamed in batches."""
        query = (
            sa.select(FileRow)
            .where(FileRow.oaio_id == oaio_id, prefix_filter(prefix))
            .order_by(FileRow.path)
            .execution_options(yield_per=STREAM_BATCH)
        )
        if session is not None:
            yield from session.scalars(query)
            return
        with self.session() as s:
            yield from s.scalars(query)

    def file_stats(self, oaio_id: str, prefix: str = "") -> dict[str, FileStat]:
        """``path -> FileStat`` of an object's indexed files under ``prefix`` (for few files: a dict in memory)."""
        return {
            path: FileStat(size, mtime, inode, bool(present))
            for path, size, mtime, inode, present in self.iter_file_stats(oaio_id, prefix)
        }

    def iter_file_stats(self, oaio_id: str, prefix: str = "") -> Iterator[StatRow]:
        """``(path, size, mtime_ns, inode, present)`` of an object's files under ``prefix``, sorted by path (SQLite's
        binary order, which is code point order), streamed from a plain DB-API cursor: the rescan reads every row
        and compares it with the disk, so no ORM object or SQLAlchemy row is built per file."""
        return self._iter_rows(_STAT_QUERY, oaio_id, prefix)

    def iter_scan_rows(self, oaio_id: str, prefix: str = "") -> Iterator[ScanRow]:
        """Like :meth:`iter_file_stats`, each row with its ``ignored`` flag (what the rescan merges with the walk)."""
        return self._iter_rows(_SCAN_QUERY, oaio_id, prefix)

    def iter_push_rows(self, oaio_id: str) -> Iterator[PushRow]:
        """``(path, present, size, mtime_ns, sha256, executable, synced_sha256, synced_executable)`` of every file of
        an object, sorted by path, streamed like :meth:`iter_file_stats` (a push reads them all to build the new
        manifest). The flags come as SQLite stores them (0/1)."""
        return self._iter_rows(_PUSH_QUERY, oaio_id, "")

    def _iter_rows(self, query: str, oaio_id: str, prefix: str) -> Iterator[Any]:
        sql = query + (" AND (path = ? OR (path >= ? AND path < ?))" if prefix else "") + " ORDER BY path"
        params = (oaio_id, prefix, prefix + "/", prefix + "0") if prefix else (oaio_id,)
        try:
            with self.engine.connect() as connection:
                cursor = connection.connection.cursor()
                try:
                    cursor.execute(sql, params)
                    while rows := cursor.fetchmany(STREAM_BATCH):
                        yield from rows
                finally:
                    cursor.close()
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            raise StateError(f"state database {self.path}: {str(exc).splitlines()[0]}") from exc

    def get_file(self, oaio_id: str, path: str, session: Session | None = None) -> FileRow | None:
        query = sa.select(FileRow).where(FileRow.oaio_id == oaio_id, FileRow.path == path)
        if session is not None:
            return session.scalar(query)
        with self.session() as s:
            return s.scalar(query)

    def ignored_files(self, oaio_id: str) -> list[FileRow]:
        """The rows of an object frozen as ignored (one indexed query; none in the common case)."""
        with self.session() as s:
            query = sa.select(FileRow).where(FileRow.oaio_id == oaio_id, FileRow.ignored.is_(True))
            return list(s.scalars(query.order_by(FileRow.path)))

    def count_files(self, oaio_id: str, *, synced: bool = False) -> int:
        with self.session() as s:
            query = sa.select(sa.func.count()).select_from(FileRow).where(FileRow.oaio_id == oaio_id)
            if synced:
                query = query.where(FileRow.synced_sha256.is_not(None))
            return s.scalar(query) or 0

    # -- folders excluded from the synced folder around them ------------------------------------------------------

    def exclude_folder(self, path: str, oaio_id: str, reason: str) -> None:
        with self.session() as s:
            s.merge(ExcludedFolderRow(path=path, oaio_id=oaio_id, reason=reason[:500], created=now_stamp()))

    def excluded_folders(self) -> list[ExcludedFolderRow]:
        with self.session() as s:
            return list(s.scalars(sa.select(ExcludedFolderRow).order_by(ExcludedFolderRow.path)))

    def include_folder(self, path: str) -> bool:
        """Drop the exclusion of ``path``; True when there was one."""
        with self.session() as s:
            return bool(_rowcount(s.execute(sa.delete(ExcludedFolderRow).where(ExcludedFolderRow.path == path))))

    # -- cursor --------------------------------------------------------------------------------------------------

    def cursor(self, server: str) -> str:
        with self.session() as s:
            row = s.get(CursorRow, server)
            return row.last_sync_stamp if row else ""

    def set_cursor(self, server: str, stamp: str) -> None:
        with self.session() as s:
            s.merge(CursorRow(server=server, last_sync_stamp=stamp))

    # -- journal -------------------------------------------------------------------------------------------------

    def journal_add(self, op: str, oaio_id: str, stamp: str, base_stamp: str, data: dict[str, Any]) -> int:
        with self.session() as s:
            row = JournalRow(op=op, oaio_id=oaio_id, stamp=stamp, base_stamp=base_stamp, data=data, created=now_stamp())
            s.add(row)
            s.flush()
            return row.id

    def journal(self) -> list[JournalRow]:
        with self.session() as s:
            return list(s.scalars(sa.select(JournalRow).order_by(JournalRow.id)))

    def journal_remove(self, entry_id: int, session: Session | None = None) -> None:
        if session is not None:
            session.execute(sa.delete(JournalRow).where(JournalRow.id == entry_id))
            return
        with self.session() as s:
            s.execute(sa.delete(JournalRow).where(JournalRow.id == entry_id))

    # -- conflicts, history ----------------------------------------------------------------------------------------

    def add_conflict(self, oaio_id: str, kind: str, path: str, copy_path: str = "", detail: str = "") -> None:
        with self.session() as s:
            s.add(
                ConflictRow(
                    oaio_id=oaio_id,
                    kind=kind,
                    path=path,
                    copy_path=copy_path,
                    detail=detail[:2000],
                    created=now_stamp(),
                )
            )

    def has_conflict(self, oaio_id: str, kind: str, path: str) -> bool:
        with self.session() as s:
            query = sa.select(ConflictRow.id).where(
                ConflictRow.oaio_id == oaio_id, ConflictRow.kind == kind, ConflictRow.path == path
            )
            return s.scalar(query.limit(1)) is not None

    def conflicts(self, limit: int = 1000) -> list[ConflictRow]:
        with self.session() as s:
            return list(s.scalars(sa.select(ConflictRow).order_by(ConflictRow.id.desc()).limit(limit)))

    def files_named_like(self, mark: str, limit: int = 1000) -> list[tuple[str, str]]:
        """``(oaio_id, path)`` of present, not ignored files whose path contains ``mark`` (conflicted copies)."""
        escaped = mark.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = (
            sa.select(FileRow.oaio_id, FileRow.path)
            .where(FileRow.present, ~FileRow.ignored, FileRow.path.like(f"%{escaped}%", escape="\\"))
            .order_by(FileRow.oaio_id, FileRow.path)
            .limit(limit)
        )
        with self.session() as s:
            return [(oaio_id, path) for oaio_id, path in s.execute(query)]

    def add_history(self, oaio_id: str, action: str, path: str = "", detail: str = "", device: str = "") -> None:
        with self.session() as s:
            s.add(HistoryRow(at=now_stamp(), oaio_id=oaio_id, action=action, path=path, detail=detail[:2000],
                             device=device))  # fmt: skip

    def add_history_rows(self, oaio_id: str, rows: Iterable[tuple[str, str, str]], device: str) -> None:
        """``(action, path, detail)`` rows of one object and device, in one transaction (one executemany: a first
        pull of 100,000 files writes as many rows)."""
        at = now_stamp()
        values = [(at, oaio_id, action, path, detail[:2000], device) for action, path, detail in rows]
        if values:
            with self.session() as s:  # the driver's executemany: the ORM's insert of 100,000 dicts took 3 s
                s.connection().exec_driver_sql(_INSERT_HISTORY, values)

    def history(
        self,
        limit: int = 200,
        *,
        since: str = "",
        scopes: Iterable[tuple[str, str]] | None = None,
        without: Iterable[str] = (),
    ) -> list[HistoryRow]:
        """The newest ``limit`` rows, newest first: written at ``since`` (a stamp) or later, of the ``(oaio_id,
        path)`` scopes (a path "" is the whole object, else that file or folder), none of the actions ``without``."""
        query = sa.select(HistoryRow).order_by(HistoryRow.id.desc()).limit(limit)
        if since:
            query = query.where(HistoryRow.at >= since)
        if scopes is not None:
            query = query.where(sa.or_(sa.false(), *(_history_scope(oaio_id, path) for oaio_id, path in scopes)))
        excluded = list(without)
        if excluded:
            query = query.where(HistoryRow.action.not_in(excluded))
        with self.session() as s:
            return list(s.scalars(query))

    def prune_history(self, keep: int) -> int:
        """Delete all but the newest ``keep`` history rows; how many went."""
        with self.session() as s:
            newest = s.scalar(sa.select(sa.func.max(HistoryRow.id)))
            if newest is None or newest <= keep:
                return 0
            return _rowcount(s.execute(sa.delete(HistoryRow).where(HistoryRow.id <= newest - keep)))

    # -- errors with per-item backoff ------------------------------------------------------------------------------

    def record_error(
        self, key: str, failure: BaseException, *, what: str = "", oaio_id: str = "", path: str = ""
    ) -> ErrorRow:
        """Note a failure of ``key`` (``what`` failed: "pull", "push"…) with its kind, the one place failures are
        classified (:func:`oaiod.errors.failure_kind`). Its next try waits as :data:`~oaiod.state.backoff.BACKOFF`
        says for that kind, longer with each failure in a row of the kind (another kind starts the count again)."""
        kind = failure_kind(failure)
        message = f"{what}: {describe(failure)}" if what else describe(failure)  # for people: ctl status shows it
        now = now_stamp()
        with self.session() as s:
            row = s.get(ErrorRow, key)
            if row is None:
                row = ErrorRow(
                    key=key,
                    oaio_id=oaio_id,
                    path=path,
                    kind=str(kind),
                    message=message[:2000],
                    attempts=1,
                    first_at=now,
                    last_at=now,
                    next_try="",
                )
                s.add(row)
            else:
                row.attempts = row.attempts + 1 if row.kind == kind else 1
                row.kind, row.message, row.last_at = str(kind), message[:2000], now
            row.next_try = stamp_add(now, BACKOFF[kind].delay(row.attempts))
            return row

    def retry_errors(self, oaio_id: str | None = None, kinds: Iterable[FailureKind] | None = None) -> int:
        """Make backed-off items due now: every one, or those of ``oaio_id`` and/or of ``kinds``; how many."""
        query = sa.update(ErrorRow).where(ErrorRow.next_try > now_stamp())
        if oaio_id is not None:
            query = query.where(ErrorRow.oaio_id == oaio_id)
        if kinds is not None:
            query = query.where(ErrorRow.kind.in_([str(kind) for kind in kinds]))
        with self.session() as s:
            return _rowcount(s.execute(query.values(next_try=now_stamp())))

    def clear_error(self, key: str) -> None:
        with self.session() as s:
            s.execute(sa.delete(ErrorRow).where(ErrorRow.key == key))

    def clear_errors_of(self, oaio_id: str) -> None:
        """Forget every recorded failure of an object and its files (it synced completely)."""
        with self.session() as s:
            s.execute(sa.delete(ErrorRow).where(ErrorRow.oaio_id == oaio_id))

    def backing_off(self, key: str) -> bool:
        """True while ``key`` failed recently and its next try lies in the future (:meth:`_waiting`)."""
        now = now_stamp()
        with self.session() as s:
            row = s.get(ErrorRow, key)
            return row is not None and row.next_try > now >= row.last_at

    @staticmethod
    def _waiting(now: str) -> Any:
        """The rows still waiting at ``now``: next try ahead, and the failure not "in the future" — one recorded
        while the wall clock ran ahead (a clock corrected back by hours or days) would else wait that much longer;
        it is due at once instead (found by a randomized run: a +2 d jump during a failure)."""
        return sa.and_(ErrorRow.next_try > now, ErrorRow.last_at <= now)

    def files_backing_off(self, oaio_id: str, failed_after: str) -> set[str]:
        """Paths of ``oaio_id`` whose merge failed after the stamp ``failed_after`` (the server's version being
        merged), with a kind of :data:`~oaiod.state.backoff.WAITED_OUT_BY_FILES`, and whose next try lies in the
        future: that version failed for them, and they wait."""
        query = sa.select(ErrorRow.path).where(
            ErrorRow.oaio_id == oaio_id,
            ErrorRow.kind.in_([str(kind) for kind in WAITED_OUT_BY_FILES]),
            ErrorRow.key.startswith(f"file:{oaio_id}:", autoescape=True),
            self._waiting(now_stamp()),
            ErrorRow.last_at > failed_after,
        )
        with self.session() as s:
            return set(s.scalars(query))

    def errors(self) -> list[ErrorRow]:
        with self.session() as s:
            return list(s.scalars(sa.select(ErrorRow).order_by(ErrorRow.last_at.desc())))

    # -- local sources of content ---------------------------------------------------------------------------------

    def local_sources(self, shas: Iterable[str], roots: Mapping[str, str]) -> dict[str, list[LocalSource]]:
        """Files this device holds with one of ``shas`` in the objects of ``roots`` (oaio id -> local folder): their
        indexed files, then the files of their trash folders; by sha256. What a pull may copy instead of
        downloading. Rows only: the caller checks the file and the hash it copies."""
        wanted = sorted(set(shas))
        trash_of = tuple(f"{root.rstrip('/')}/.oaiod/trash/" for root in roots.values())
        found: dict[str, list[LocalSource]] = {}
        try:
            with self.engine.connect() as connection:
                cursor = connection.connection.cursor()
                try:
                    for start in range(0, len(wanted), _LOOKUP_CHUNK):
                        chunk = wanted[start : start + _LOOKUP_CHUNK]
                        marks = ", ".join("?" * len(chunk))
                        cursor.execute(_SOURCES_IN_FILES.format(marks), chunk)
                        for sha, oaio_id, path, size, mtime, inode in cursor.fetchall():
                            root = roots.get(oaio_id)
                            if root is not None:
                                found.setdefault(sha, []).append(
                                    (sha, f"{root.rstrip('/')}/{path}", size, mtime, inode)
                                )
                        cursor.execute(_SOURCES_IN_TRASH.format(marks), chunk)
                        for sha, path, size, mtime, inode in cursor.fetchall():
                            if path.startswith(trash_of):
                                found.setdefault(sha, []).append((sha, path, size, mtime, inode))
                finally:
                    cursor.close()
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            raise StateError(f"state database {self.path}: {str(exc).splitlines()[0]}") from exc
        return found

    def forget_trash(self, *, path: str | None = None, before: str | None = None) -> int:
        """Drop trash rows: the one of ``path`` (its file is gone or changed), or those made before the stamp
        ``before`` (their day folders were purged). Returns how many."""
        query = sa.delete(TrashRow)
        if path is not None:
            query = query.where(TrashRow.path == path)
        if before is not None:
            query = query.where(TrashRow.created < before)
        with self.session() as s:
            return _rowcount(s.execute(query))

    # -- rebuild -------------------------------------------------------------------------------------------------

    def wipe_index(self) -> None:
        """Forget objects, files, cursors, journal and errors (conflicts and history stay); user files untouched."""
        with self.session() as s:
            for table in (FileRow, ObjectRow, CursorRow, JournalRow, ErrorRow):
                s.execute(sa.delete(table))


_INSERT_HISTORY = (
    f"INSERT INTO {HistoryRow.__tablename__} (at, oaio_id, action, path, detail, device) VALUES (?, ?, ?, ?, ?, ?)"
)


def _history_scope(oaio_id: str, path: str) -> sa.ColumnElement[bool]:
    """History rows of one object, or of the file or folder ``path`` in it (compared as text, not LIKE: a path
    may hold ``%`` or ``_``)."""
    mine = HistoryRow.oaio_id == oaio_id
    if not path:
        return mine
    inside = sa.func.substr(HistoryRow.path, 1, len(path) + 1) == path + "/"
    return sa.and_(mine, sa.or_(HistoryRow.path == path, inside))
