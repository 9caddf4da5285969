"""The hub's tables (SQLAlchemy 2) and its engine: SQLite in WAL mode with foreign keys on, or PostgreSQL.

The schema is owned by Alembic (``migrations/hub``); these models must match it, which a test checks with
``alembic.autogenerate.compare_metadata``. All times are stamps (``%Y%m%d%H%M%S%f`` UTC strings, which sort
in time order). ``change_stamp`` columns hold the hub's clock at the change, assigned in commit order.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from oaiod import jsoncodec
from oaiod.model import stamp_add as stamp_add  # the hub's modules import it from here

NAME = String(150)  # user, device and app ids
ID = String(255)  # oaio ids
STAMP = String(20)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class User(Base):
    """An account; ``password_hash`` NULL means it exists (can be subscribed) but cannot log in."""

    __tablename__ = "users"
    username: Mapped[str] = mapped_column(NAME, primary_key=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_supervisor: Mapped[bool] = mapped_column(default=False)
    created: Mapped[str] = mapped_column(STAMP)


class LoginSession(Base):
    """A server-side login session; the cookie holds the token, the table only its sha256."""

    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(NAME, ForeignKey("users.username", ondelete="CASCADE"), index=True)
    created: Mapped[str] = mapped_column(STAMP)
    expires: Mapped[str] = mapped_column(STAMP, index=True)


class Object(Base):
    """An oaio object with its two newest versions (``client_*`` newest, ``server_*`` the one before)."""

    __tablename__ = "objects"
    oaio_id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_stamp: Mapped[str] = mapped_column(STAMP)
    client_values: Mapped[dict[str, Any]] = mapped_column(JSON)
    server_stamp: Mapped[str] = mapped_column(STAMP, default="")
    server_values: Mapped[dict[str, Any]] = mapped_column(JSON)
    csh_id: Mapped[str | None] = mapped_column(NAME)
    username: Mapped[str] = mapped_column(NAME)  # author of the newest version
    device_id: Mapped[str] = mapped_column(NAME)
    app_id: Mapped[str] = mapped_column(NAME)
    creator: Mapped[str] = mapped_column(NAME)  # a plain name: the object outlives a wiped creator
    registered: Mapped[str] = mapped_column(STAMP)  # hub clock when register/ committed (never from the id)
    change_stamp: Mapped[str] = mapped_column(STAMP, index=True)


class Version(Base):
    """Every version an object had, for ``hub/versions/`` and a later restore."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("oaio_id", "stamp"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    oaio_id: Mapped[str] = mapped_column(ID, ForeignKey("objects.oaio_id", ondelete="CASCADE"))
    stamp: Mapped[str] = mapped_column(STAMP)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    csh_id: Mapped[str | None] = mapped_column(NAME)
    username: Mapped[str] = mapped_column(NAME)
    device_id: Mapped[str] = mapped_column(NAME)
    app_id: Mapped[str] = mapped_column(NAME)
    created: Mapped[str] = mapped_column(STAMP)  # hub clock


class Subscription(Base):
    """A user's right on an object; ``Pid`` is what ``subscribe/`` answers."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("oaio_id", "username"), Index(None, "username", "change_stamp"))
    pid: Mapped[int] = mapped_column("Pid", primary_key=True, autoincrement=True)
    oaio_id: Mapped[str] = mapped_column(ID, ForeignKey("objects.oaio_id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(NAME, ForeignKey("users.username", ondelete="CASCADE"))
    access_right: Mapped[str] = mapped_column(String(1))
    change_stamp: Mapped[str] = mapped_column(STAMP)


class Tombstone(Base):
    """An object that became unreadable for a user (deleted, or the subscription removed) at ``stamp``."""

    __tablename__ = "tombstones"
    __table_args__ = (UniqueConstraint("oaio_id", "username"), Index(None, "username", "stamp"))
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    oaio_id: Mapped[str] = mapped_column(ID)
    username: Mapped[str] = mapped_column(NAME, ForeignKey("users.username", ondelete="CASCADE"))
    stamp: Mapped[str] = mapped_column(STAMP)


class LogEntry(Base):
    """The action log: who did what to which object, from which device and app."""

    __tablename__ = "action_log"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    stamp: Mapped[str] = mapped_column(STAMP, index=True)
    username: Mapped[str] = mapped_column(NAME, ForeignKey("users.username", ondelete="CASCADE"), index=True)
    device_id: Mapped[str] = mapped_column(NAME)
    app_id: Mapped[str] = mapped_column(NAME)
    action: Mapped[str] = mapped_column(String(20))
    oaio_id: Mapped[str | None] = mapped_column(ID)
    detail: Mapped[str] = mapped_column(String(300), default="")


class StorageHost(Base):
    """A cloud storage host: the keyword arguments ``csh_args/<csh_id>`` hands to clients."""

    __tablename__ = "storage_hosts"
    csh_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated: Mapped[str] = mapped_column(STAMP)


class Blob(Base):
    """A finished blob (``hub/blobs/``): a name pointing at content stored once per sha256 under the data folder.

    ``owner`` is ``""`` for blobs under an oaio id (shared by the object's subscribers) and the username for a
    user's private blobs (keys outside any oaio id); ``scope`` is the key's first component, for access checks.
    """

    __tablename__ = "blobs"
    __table_args__ = (UniqueConstraint("owner", "name_hash"), Index(None, "owner", "scope"))
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(NAME)
    scope: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(sa.Text)
    name_hash: Mapped[str] = mapped_column(String(64))  # sha256 of ``name``: long names cannot be indexed
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    creator: Mapped[str] = mapped_column(NAME)
    created: Mapped[str] = mapped_column(STAMP)
    expires: Mapped[str | None] = mapped_column(STAMP)


class BlobUpload(Base):
    """An unfinished blob upload; the caller's secret ``uploadId`` is kept only as its sha256."""

    __tablename__ = "blob_uploads"
    __table_args__ = (UniqueConstraint("owner", "name_hash"), Index(None, "owner", "scope"))
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(NAME)
    scope: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(sa.Text)
    name_hash: Mapped[str] = mapped_column(String(64))
    upload_id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    creator: Mapped[str] = mapped_column(NAME)
    created: Mapped[str] = mapped_column(STAMP)
    deadline: Mapped[str] = mapped_column(STAMP, index=True)  # unfinished uploads are dropped after this
    expires: Mapped[str | None] = mapped_column(STAMP)  # of the object, once finished


class BlobBlock(Base):
    """One block of a content stored as its blocks (a *recipe*, :mod:`oaiod.hub.blobrecipes`): the content
    ``content`` is the concatenation of its blocks in ``seq`` order, each an ordinary content by sha256. A block is
    removed only when no name and no recipe points at it."""

    __tablename__ = "blob_blocks"
    content: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    block: Mapped[str] = mapped_column(String(64), index=True)
    offset: Mapped[int] = mapped_column(sa.BigInteger)
    size: Mapped[int] = mapped_column(sa.Integer)


class ChangeClock(Base):
    """One row (``id`` 1): the newest change stamp handed out. Every write transaction locks it first, whatever
    process runs it, so write transactions commit one after the other and stamps grow in commit order (the
    module docstring of :mod:`oaiod.hub.service` says what readers get from it)."""

    __tablename__ = "change_clock"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    stamp: Mapped[str] = mapped_column(STAMP)


class HubSecret(Base):
    """A secret every hub process on this database must share (the login device-token key)."""

    __tablename__ = "hub_secrets"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))  # hex


class LoginFailure(Base):
    """Failed logins of one throttle key (:mod:`oaiod.hub.loginguard`), shared by every hub process.

    ``key_hash`` is the sha256 of the counter's name and key (user names and addresses, not kept in clear);
    times are wall-clock seconds (``time.time()``), the one clock the hub's processes and machines share.
    """

    __tablename__ = "login_failures"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[list[float]] = mapped_column(JSON)  #: times of the failures in the window, oldest first
    lockouts: Mapped[int] = mapped_column(sa.Integer)
    locked_until: Mapped[float] = mapped_column(sa.Float)
    last: Mapped[float] = mapped_column(sa.Float, index=True)


class ShareLink(Base):
    """A share link (:mod:`oaiod.hub.links`): read of one file or folder of an object, without an account.

    ``path`` ``""`` is the whole object; ``stamp`` ``""`` follows the newest version. Goes with its object and
    its creator (cascades); ``revoked`` is the stamp of a revocation (kept, so the link answers 410, not 404).
    """

    __tablename__ = "share_links"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    oaio_id: Mapped[str] = mapped_column(ID, ForeignKey("objects.oaio_id", ondelete="CASCADE"), index=True)
    creator: Mapped[str] = mapped_column(NAME, ForeignKey("users.username", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(sa.Text)
    stamp: Mapped[str] = mapped_column(STAMP)
    is_folder: Mapped[bool] = mapped_column()
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[str] = mapped_column(STAMP)
    expires: Mapped[str] = mapped_column(STAMP)
    revoked: Mapped[str | None] = mapped_column(STAMP)


class FolderArchive(Base):
    """A zip of a folder (or sub-folder) of one version, prepared in the background (:mod:`oaiod.hub.archives`).

    ``username`` is whose read right it relies on (the requester, or a link's creator with ``link_id``);
    ``state`` ``preparing`` / ``prepared`` / ``error``; ``updated`` is the builder's heartbeat (a builder whose
    process died stops beating); ``size`` the archive's size bound (exact once prepared), counted against the
    hub's archive disk limit until ``expires``.
    """

    __tablename__ = "folder_archives"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    oaio_id: Mapped[str] = mapped_column(ID, ForeignKey("objects.oaio_id", ondelete="CASCADE"), index=True)
    stamp: Mapped[str] = mapped_column(STAMP)
    path: Mapped[str] = mapped_column(sa.Text)
    username: Mapped[str] = mapped_column(NAME, ForeignKey("users.username", ondelete="CASCADE"))
    link_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("share_links.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(12))
    done: Mapped[int] = mapped_column(sa.BigInteger)
    total: Mapped[int] = mapped_column(sa.BigInteger)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    error: Mapped[str] = mapped_column(String(300))
    created: Mapped[str] = mapped_column(STAMP)
    updated: Mapped[str] = mapped_column(STAMP)
    expires: Mapped[str] = mapped_column(STAMP, index=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL a bigger pool.

    JSON columns are written by :func:`oaiod.jsoncodec.dumps_text` (compact UTF-8; an object's values can be a
    megabyte, written twice per upload) and read by the driver's default ``json.loads``.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, json_serializer=jsoncodec.dumps_text
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, json_serializer=jsoncodec.dumps_text
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (answers are built after the write)."""
    return sessionmaker(engine, expire_on_commit=False)
