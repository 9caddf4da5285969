"""The daemon's tables (SQLAlchemy 2 over SQLite in WAL mode); the schema is owned by Alembic (``migrations/daemon``).

A test checks that these models and the migrations agree (``alembic.autogenerate.compare_metadata``).
Times are stamps (``%Y%m%d%H%M%S%f`` UTC strings, which sort in time order).

The index is built so that a sync cycle with nothing to do touches no file row: objects with local changes carry
``local_dirty``; the per-file rows are read only for an object that changed on either side, and then streamed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME = String(150)
ID = String(255)
STAMP = String(20)
SHA = String(64)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# object kinds (see docs/design.md §1)
KIND_ROOT = "root"  # the client root folder object, _name "oaiod-root"
KIND_FOLDER = "folder"  # a folder added with `ctl add` (or shared with us), with the _oaiod manifest
KIND_FILES = "files"  # a file object of an app: only its listed files sync
KIND_DATA = "data"  # values only
KINDS = (KIND_ROOT, KIND_FOLDER, KIND_FILES, KIND_DATA)

# object status
STATUS_ACTIVE = "active"
STATUS_HELD = "held"  # a mass deletion waits for `ctl confirm-delete`
STATUS_NEW = "new"  # registered locally, not on the server yet
MODE_SEND_RECEIVE = "send-receive"  # pull and push (the default)
MODE_SEND_ONLY = "send-only"  # push; the server's changes are not applied here (until `ctl override`)
MODE_RECEIVE_ONLY = "receive-only"  # pull; local changes are never pushed (`ctl revert` undoes them)
MODES = (MODE_SEND_RECEIVE, MODE_SEND_ONLY, MODE_RECEIVE_ONLY)
STATUS_REMOVED = "removed"  # no longer synced (unsubscribed or deleted on the server); files stay on disk


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class ObjectRow(Base):
    """An oaio object as last seen on the server, plus where it lives here and the last synced version (the base)."""

    __tablename__ = "objects"
    oaio_id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_stamp: Mapped[str] = mapped_column(STAMP, default="")
    server_stamp: Mapped[str] = mapped_column(STAMP, default="")
    client_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    server_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    csh_id: Mapped[str | None] = mapped_column(NAME)
    username: Mapped[str] = mapped_column(NAME, default="")
    device_id: Mapped[str] = mapped_column(NAME, default="")
    app_id: Mapped[str] = mapped_column(NAME, default="")
    csh_access_right: Mapped[str] = mapped_column(String(1), default="")
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default=STATUS_ACTIVE, index=True)
    #: absolute local folder of the files (NULL for data objects); decided once, never from a hostile value alone
    local_root: Mapped[str | None] = mapped_column(String(4096))
    #: the version whose files and values this device holds: the base of the three-way merge
    synced_stamp: Mapped[str] = mapped_column(STAMP, default="")
    synced_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: local values not pushed yet (data objects, `ctl` edits); merged by key against synced_values
    local_values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: set when a file of this object changed locally since the last push; cleared by a successful push
    local_dirty: Mapped[bool] = mapped_column(default=False, index=True)
    #: set when the server has a version newer than synced_stamp that is not merged yet (a failed pull)
    remote_dirty: Mapped[bool] = mapped_column(default=False, index=True)
    hold_reason: Mapped[str] = mapped_column(String(500), default="")
    delete_confirmed: Mapped[bool] = mapped_column(default=False)
    #: send-receive, send-only or receive-only (Syncthing's folder types; :mod:`oaiod.engine.modes`)
    mode: Mapped[str] = mapped_column(String(12), default=MODE_SEND_RECEIVE, server_default=sa.text("'send-receive'"))


class FileRow(Base):
    """One file of an object: its local stat and hash (``sha256`` NULL while unknown) and its synced state."""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("oaio_id", "path"), sa.Index("ix_files_oaio_id_ignored", "oaio_id", "ignored"))
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    oaio_id: Mapped[str] = mapped_column(ID, ForeignKey("objects.oaio_id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(4096))
    #: False when the file is indexed (e.g. synced) but not on disk
    present: Mapped[bool] = mapped_column(default=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    inode: Mapped[int] = mapped_column(BigInteger, default=0)
    #: indexed: a pull finds a local file with the content it needs here (a rename, a copy) instead of downloading
    sha256: Mapped[str | None] = mapped_column(SHA, index=True)
    executable: Mapped[bool] = mapped_column(default=False)
    #: content of the file in the version ``synced_stamp`` (NULL: not in the base version)
    synced_sha256: Mapped[str | None] = mapped_column(SHA)
    synced_stamp: Mapped[str] = mapped_column(STAMP, default="")
    synced_executable: Mapped[bool] = mapped_column(default=False)
    #: the path is ignored here now (``.oaioignore``, ``ignore_patterns``) but was synced: the row is frozen at the
    #: synced state, so the file stays on the server as it was and is neither uploaded nor deleted from here
    ignored: Mapped[bool] = mapped_column(default=False, server_default=sa.text("0"))


class EmptyDirRow(Base):
    """An empty folder of an object's root as the index last saw it: it syncs as part of the version (the manifest's
    ``dirs``, design §1), so a folder made here with nothing in it appears on the other devices too."""

    __tablename__ = "empty_dirs"
    oaio_id: Mapped[str] = mapped_column(ID, ForeignKey("objects.oaio_id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), primary_key=True)


class ExcludedPathRow(Base):
    """A file or folder of an object that is not synced on this device (selective sync, ``ctl exclude``): not
    downloaded here, and never deleted on the server or the other devices for being absent here."""

    __tablename__ = "excluded_paths"
    oaio_id: Mapped[str] = mapped_column(ID, ForeignKey("objects.oaio_id", ondelete="CASCADE"), primary_key=True)
    #: relative to the object's folder
    path: Mapped[str] = mapped_column(String(4096), primary_key=True)
    created: Mapped[str] = mapped_column(STAMP)


class ExcludedFolderRow(Base):
    """A folder inside a synced folder that is not synced with it on this device: it was the root of an object that
    stopped syncing here (``ctl remove``, deleted on the server, unshared). Its files stay on disk and are not taken
    into the folder around it until ``ctl add`` syncs it again or it is deleted or moved away (design §1)."""

    __tablename__ = "excluded_folders"
    #: absolute local path
    path: Mapped[str] = mapped_column(String(4096), primary_key=True)
    #: the object whose folder it was
    oaio_id: Mapped[str] = mapped_column(ID, default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    created: Mapped[str] = mapped_column(STAMP)


class TrashRow(Base):
    """A file a pull moved or linked into a trash folder (``<root>/.oaiod/trash/<day>/<path>``), as it was indexed:
    a later pull that needs this content (a revert, a file restored from the trash on another device) copies it
    from here instead of downloading it. A row may outlive its file (the user emptied the trash): every use checks
    the stat and the hash, and ``gc`` drops the rows of purged days."""

    __tablename__ = "trash"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    #: absolute local path of the file in the trash
    path: Mapped[str] = mapped_column(String(4096))
    sha256: Mapped[str] = mapped_column(SHA, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[str] = mapped_column(STAMP, index=True)


class CursorRow(Base):
    """The ``since`` cursor of the change listing, per server."""

    __tablename__ = "cursors"
    server: Mapped[str] = mapped_column(String(2048), primary_key=True)
    last_sync_stamp: Mapped[str] = mapped_column(STAMP)


class JournalRow(Base):
    """An operation in flight (a version commit, a pull's batch of downloads being installed…); a row left at start
    means it was interrupted."""

    __tablename__ = "journal"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(20))
    oaio_id: Mapped[str] = mapped_column(ID, index=True)
    stamp: Mapped[str] = mapped_column(STAMP)
    base_stamp: Mapped[str] = mapped_column(STAMP, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[str] = mapped_column(STAMP)


class ConflictRow(Base):
    """A conflict: a conflicted copy of a file, or a value key changed differently on both sides."""

    __tablename__ = "conflicts"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    oaio_id: Mapped[str] = mapped_column(ID, index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "file" | "value" | "readonly"
    path: Mapped[str] = mapped_column(String(4096))
    copy_path: Mapped[str] = mapped_column(String(4096), default="")
    detail: Mapped[str] = mapped_column(String(2000), default="")
    created: Mapped[str] = mapped_column(STAMP, index=True)


class HistoryRow(Base):
    """What a sync did: one row per file changed (added, changed, deleted, moved, conflict; ``path`` relative to
    the object's folder) and one per object event (held, confirm, add, removed, a version's totals…)."""

    __tablename__ = "history"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[str] = mapped_column(STAMP, index=True)
    oaio_id: Mapped[str] = mapped_column(ID)
    action: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(String(4096), default="")
    detail: Mapped[str] = mapped_column(String(2000), default="")
    #: the device that made the change: the committing device of a pulled version, this device for its commits
    device: Mapped[str] = mapped_column(ID, default="", server_default="")


class ErrorRow(Base):
    """A failing item (an object or one of its files) with its own backoff, so it never blocks the others; ``kind``
    (an :class:`oaiod.errors.FailureKind`) decides how long it waits (:mod:`oaiod.state.backoff`)."""

    __tablename__ = "errors"
    key: Mapped[str] = mapped_column(String(4400), primary_key=True)
    oaio_id: Mapped[str] = mapped_column(ID, default="")
    path: Mapped[str] = mapped_column(String(4096), default="")
    kind: Mapped[str] = mapped_column(String(20), default="transient")
    message: Mapped[str] = mapped_column(String(2000))
    attempts: Mapped[int] = mapped_column(default=1)
    first_at: Mapped[str] = mapped_column(STAMP)
    last_at: Mapped[str] = mapped_column(STAMP)
    next_try: Mapped[str] = mapped_column(STAMP, index=True)
