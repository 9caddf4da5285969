"""The hub's business rules over a database session: rights, versions, subscriptions, tombstones, change stamps.

No HTTP here: :mod:`oaiod.hub.routes` and :mod:`oaiod.hub.feed` call these methods with an :class:`Actor`
(who acts, from which device and app) and validated input, and get plain dicts back or a
:class:`~oaiod.hub.errors.HubError`.

Guarantees:

- Writes are serialised by the database, across every hub process on it: each write transaction first locks the
  one row of ``change_clock`` (``UPDATE … RETURNING``: a row lock on PostgreSQL, the write lock on SQLite) and
  holds it to its commit. So write transactions run one after the other, each sees everything committed before
  it (the 409 rule, register races, subscriptions and deletions need nothing more), and each change gets the
  stamp ``max(now, last + 1µs)``, written back to the row before commit: stamps grow strictly in commit order.
- A reader's cursor is the row's stamp, read *before* its query in a statement of its own: the transaction that
  wrote that stamp has committed, so every one with a smaller stamp has too and the query sees them all; any
  transaction not committed yet waits for the row or holds it, and gets a larger stamp. A chain of ``since``
  cursors through any hub processes therefore misses no committed change (it may see one twice).
- SQLite is one hub process: a process lock beside the row spares writers SQLite's busy-wait.
- A refused request (any :class:`HubError` raised inside a write) rolls back: the database is unchanged.
- After each committed change, ``on_commit(stamp, usernames)`` (in this process) and the :class:`ChangeBus`
  (every other process on the database) name every user whose change feed it concerns
  (:func:`wake_feeds`, filled inside the transaction): the subscribers of an object registered or uploaded,
  the user whose subscription was added or whose right changed, every user who got a tombstone (a deleted
  object's former subscribers, a removed subscription's user). A user it does not name sees no difference in
  ``has_changes``. Wiping a user names nobody: only that user's rows and objects no one else subscribes to go.
- Rights (see ``docs/hub-api.md``): ``C`` only for the creator; ``upload/`` needs ``U``; ``delete/`` needs
  ``D``; granting needs ``D`` and never more than the granter holds; a non-subscriber learns nothing.
- Data kept beside objects and users (the blob store) is an :class:`Attachment`: a transaction that deletes
  objects or wipes a user hands it the :class:`Removal` before commit, so it drops its part in the same
  transaction, and lets it clean up files after commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session, defer

from oaiod import migrate
from oaiod.errors import ValidationError
from oaiod.hub import datadir
from oaiod.hub.accounts import AccountsMixin
from oaiod.hub.changebus import ChangeBus, LocalBus, PostgresBus
from oaiod.hub.db import (
    ChangeClock,
    LogEntry,
    LoginSession,
    Object,
    Subscription,
    Tombstone,
    User,
    Version,
    make_engine,
    make_sessionmaker,
    stamp_add,
)
from oaiod.hub.errors import Conflict, Forbidden, Gone, NotFound
from oaiod.hub.settings import HubSettings
from oaiod.model import (
    CREATE_ACCESS_RIGHT,
    DELETE_ACCESS_RIGHT,
    NO_ACCESS_RIGHT,
    UPDATE_ACCESS_RIGHT,
    OaiObject,
    id_names_user,
    now_stamp,
    right_grants,
)


def changed_ids(username: str, since: str) -> sa.ScalarSelect[str]:
    """Ids of objects that changed after ``since`` or whose subscription of ``username`` did.

    Answered from the change-stamp indexes alone: an object row's ``change_stamp`` sits behind its values
    (megabytes for a large folder), so filtering rows on it would read every object in full (35 ms → 5 ms
    for a no-change delta over 3 objects of 100k files each).
    """
    return sa.union(
        sa.select(Object.oaio_id).where(Object.change_stamp > since),
        sa.select(Subscription.oaio_id).where(Subscription.username == username, Subscription.change_stamp > since),
    ).scalar_subquery()


MIGRATION_LOCK = 0x6F61696F64  #: PostgreSQL advisory lock key held while one hub process upgrades the schema


def upgrade_schema(url: str) -> None:
    """Bring the hub database to the newest revision. On PostgreSQL several hub processes may start at once: an
    advisory lock lets one upgrade while the others wait, then find nothing left to do."""
    if sa.engine.make_url(url).get_backend_name() == "sqlite":
        migrate.upgrade("hub", url)
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK)))
            conn.commit()
            try:
                migrate.upgrade("hub", url)
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK)))
                conn.commit()
    finally:
        engine.dispose()


_CLOCK: sa.Table = ChangeClock.__table__  # type: ignore[assignment]
#: a write transaction's first statement (Core, not ORM: it runs for every write)
_LOCK_CLOCK = sa.update(_CLOCK).where(_CLOCK.c.id == 1).values(stamp=_CLOCK.c.stamp).returning(_CLOCK.c.stamp)
_READ_CLOCK = sa.select(_CLOCK.c.stamp).where(_CLOCK.c.id == 1)
_SET_CLOCK = sa.update(_CLOCK).where(_CLOCK.c.id == 1).values(stamp=sa.bindparam("new"))

_WOKEN = "oaiod.woken"  #: key in a write session's ``info``: the users whose change feed the transaction concerns


def wake_feeds(db: Session, usernames: Iterable[str]) -> None:
    """Note that this write transaction changes what ``usernames`` see in the change feed; their long polls
    wake once it commits (see the module docstring)."""
    db.info[_WOKEN].update(usernames)


def wake_readers(db: Session, oaio_id: str) -> None:
    """:func:`wake_feeds` for every subscriber of ``oaio_id`` (one lookup on the subscriptions' id index)."""
    wake_feeds(db, db.scalars(sa.select(Subscription.username).where(Subscription.oaio_id == oaio_id)))


@dataclass(frozen=True)
class Actor:
    """Who a request acts for: ``username`` (effective, maybe impersonated) and the session's own ``login``."""

    username: str
    login: str
    is_supervisor: bool
    device_id: str = ""
    app_id: str = ""


@dataclass
class Removal:
    """What one write transaction removes, for the attachments to follow: objects by id, users by name."""

    oaio_ids: list[str] = field(default_factory=list)
    usernames: list[str] = field(default_factory=list)


class Attachment(Protocol):
    """Data a hub keeps beside its objects and users (the blob store), removed together with them."""

    def removing(self) -> AbstractContextManager[Callable[[Session, Removal], None]]:
        """Entered before the write lock; the callable drops the attachment's rows for a :class:`Removal` inside
        the transaction (before commit); leaving cleans up what must wait for the commit (files)."""
        ...

    def check_claim(self, db: Session, oaio_id: str, username: str) -> None:
        """Raise a :class:`~oaiod.hub.errors.HubError` when ``username`` may not register ``oaio_id`` because of
        data the attachment holds under that id for another user (files uploaded before ``register/``)."""
        ...


class HubService(AccountsMixin):
    """Every hub operation; thread-safe (routes call it from the threadpool)."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        shared = self.engine.dialect.name != "sqlite"
        #: SQLite only (one process): writers queue here rather than in SQLite's busy-wait
        self._write_lock: AbstractContextManager[Any] = nullcontext() if shared else threading.Lock()
        #: carries commits to the change feeds of the other hub processes on the database
        self.bus: ChangeBus = PostgresBus(self.engine) if shared else LocalBus()
        self._last_purge = ""
        #: called with the change stamp and the users it concerns after each committed change (the change feed
        #: hooks in here; see the module docstring)
        self.on_commit: Callable[[str, frozenset[str]], None] | None = None
        self.attachments: list[Attachment] = []  #: see :meth:`attach`

    def attach(self, attachment: Attachment) -> None:
        """Have ``attachment`` follow every object deletion and user wipe (see :class:`Attachment`)."""
        self.attachments.append(attachment)

    @classmethod
    def open(cls, settings: HubSettings, *, upgrade: bool = True) -> HubService:
        """Create the data folder (mode 0700), keep its database private (:mod:`oaiod.hub.datadir`), upgrade the
        schema to the newest revision (unless ``upgrade`` is false: a process that knows it is done) and connect."""
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        datadir.protect(settings.data_dir, settings.database_url)
        if upgrade:
            upgrade_schema(settings.database_url)
        return cls(settings)

    def close(self) -> None:
        """Stop listening to other processes and release every database connection."""
        self.bus.close()
        self.engine.dispose()

    # -- clock and transactions ----------------------------------------------------------------------------------

    @property
    def sync_stamp(self) -> str:
        """The cursor for readers, read in a statement of its own (see the module docstring)."""
        with self.sessions() as db:
            return self.cursor(db)

    @staticmethod
    def cursor(db: Session) -> str:
        """The stamp of the newest committed change; read it *before* the query it is the cursor of."""
        return db.connection().execute(_READ_CLOCK).scalar() or ""

    @contextmanager
    def _writing(self, *, changes: bool = True) -> Iterator[tuple[Session, str]]:
        """A serialised write transaction and its change stamp; committed when the block ends without error.

        The block names the users whose change feed it concerns with :func:`wake_feeds`; ``on_commit`` and the
        bus get them. ``changes=False`` (accounts, sessions, storage hosts) is serialised too, without a stamp.
        """
        woken: set[str] = set()
        try:
            with self._write_lock, self.sessions.begin() as db:
                db.info[_WOKEN] = woken
                # first statement: the row lock (PostgreSQL) or write lock (SQLite) that orders every writer
                last = db.connection().execute(_LOCK_CLOCK).scalar()
                if last is None:
                    raise RuntimeError("the hub database has no change clock: upgrade it (oaiod hub serve does)")
                stamp = max(now_stamp(), stamp_add(last, 0.000001)) if changes else now_stamp()
                yield db, stamp
                if changes:
                    self._purge_tombstones(db, stamp)
                    db.connection().execute(_SET_CLOCK, {"new": stamp})
                    if woken:
                        self.bus.publish(db, stamp, frozenset(woken))
        except sa.exc.IntegrityError as exc:
            # writers are ordered, but a row they rely on can go between a request's checks and its transaction
            # (a user wiped while their request was under way) or be written by data kept beside the hub's own
            raise Conflict("the request collided with a change made at the same time; retry it") from exc
        if changes and woken and self.on_commit is not None:
            self.on_commit(stamp, frozenset(woken))

    def serialised(self) -> AbstractContextManager[tuple[Session, str]]:
        """A write transaction ordered with every other one (it takes the change clock's lock), without a change
        stamp: for data kept beside objects (links, archives) whose check-then-write must not race another hub."""
        return self._writing(changes=False)

    @contextmanager
    def _removing(self) -> Iterator[tuple[Session, str, Removal]]:
        """:meth:`_writing` for a change that deletes objects or users: the block fills the :class:`Removal`, and
        every attachment drops its part in the same transaction. Attachments are entered before the write
        transaction (their lock first, then the change clock: no other path takes both)."""
        removal = Removal()
        with ExitStack() as stack:
            drops = [stack.enter_context(attachment.removing()) for attachment in self.attachments]
            with self._writing() as (db, stamp):
                yield db, stamp, removal
                for drop in drops:
                    drop(db, removal)

    def tombstone_horizon(self) -> str:
        """Removals older than this stamp are forgotten; a ``since`` before it answers 410."""
        return stamp_add(now_stamp(), -self.settings.tombstone_days * 86400)

    def _purge_tombstones(self, db: Session, stamp: str) -> None:
        if self._last_purge and stamp_add(self._last_purge, 3600) > stamp:
            return
        self._last_purge = stamp
        db.execute(sa.delete(Tombstone).where(Tombstone.stamp < self.tombstone_horizon()))

    def check_since(self, since: str) -> None:
        """Refuse a ``since`` older than the tombstone horizon: the caller must do a full listing."""
        if since < self.tombstone_horizon():
            raise Gone(f"changes before {self.settings.tombstone_days:g} days ago are forgotten; list everything")

    def check_not_future(self, stamp: str, fld: str = "client_stamp") -> None:
        """Refuse a stamp far ahead of the hub clock: it would block every later update of the object."""
        if stamp > stamp_add(now_stamp(), self.settings.max_future_seconds):
            raise ValidationError(fld, f"{stamp} is ahead of the hub clock by more than the allowed skew")

    # -- helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def _right(db: Session, oaio_id: str, username: str) -> str:
        right = db.scalar(
            sa.select(Subscription.access_right).where(
                Subscription.oaio_id == oaio_id, Subscription.username == username
            )
        )
        return right or NO_ACCESS_RIGHT

    def _readable(self, db: Session, oaio_id: str, actor: Actor) -> tuple[Object, str]:
        """The object and the actor's right; 404 for an unknown id and for a non-subscriber alike."""
        row = db.get(Object, oaio_id)
        right = self._right(db, oaio_id, actor.username) if row is not None else NO_ACCESS_RIGHT
        if row is None or right == NO_ACCESS_RIGHT:
            raise NotFound(f"no object {oaio_id!r} that {actor.username!r} may read")
        return row, right

    @staticmethod
    def object_dict(row: Object, right: str, lean: bool = False) -> dict[str, Any]:
        """The wire form of a stored object: exactly the ten object keys; ``lean`` leaves ``server_values`` empty
        (the previous version's values, as large as the newest: a client that never reads them asks so)."""
        return OaiObject(
            oaio_id=row.oaio_id,
            client_stamp=row.client_stamp,
            server_stamp=row.server_stamp,
            client_values=row.client_values,
            server_values={} if lean else row.server_values,
            csh_id=row.csh_id,
            username=row.username,
            device_id=row.device_id,
            app_id=row.app_id,
            csh_access_right=right,
        ).to_dict()

    @staticmethod
    def _log(db: Session, actor: Actor, stamp: str, action: str, oaio_id: str | None, detail: str = "") -> None:
        db.add(
            LogEntry(
                stamp=stamp,
                username=actor.username,
                device_id=actor.device_id,
                app_id=actor.app_id,
                action=action,
                oaio_id=oaio_id,
                detail=detail[:300],
            )
        )

    @staticmethod
    def _bury(db: Session, oaio_id: str, usernames: list[str], stamp: str) -> None:
        """Record that ``oaio_id`` became unreadable for ``usernames`` (their change feed wakes)."""
        if not usernames:
            return
        wake_feeds(db, usernames)
        db.execute(sa.delete(Tombstone).where(Tombstone.oaio_id == oaio_id, Tombstone.username.in_(usernames)))
        db.add_all(Tombstone(oaio_id=oaio_id, username=name, stamp=stamp) for name in usernames)

    @staticmethod
    def _unbury(db: Session, oaio_id: str, username: str) -> None:
        db.execute(sa.delete(Tombstone).where(Tombstone.oaio_id == oaio_id, Tombstone.username == username))

    @staticmethod
    def _delete_object(db: Session, oaio_id: str) -> list[str]:
        """Remove an object with its versions and subscriptions; the names of its former subscribers."""
        names = list(db.scalars(sa.select(Subscription.username).where(Subscription.oaio_id == oaio_id)))
        db.execute(sa.delete(Subscription).where(Subscription.oaio_id == oaio_id))
        db.execute(sa.delete(Version).where(Version.oaio_id == oaio_id))
        db.execute(sa.delete(Object).where(Object.oaio_id == oaio_id))
        return names

    # -- part A: objects ---------------------------------------------------------------------------------------

    def register(self, actor: Actor, obj: OaiObject, lean: bool = False) -> dict[str, Any]:
        """Create an object, a ``C`` subscription for the actor and its first version; 409 if the id exists
        (``lean``: as :meth:`object_dict`).

        The id must name the actor as its user (403 otherwise): ids are minted ``app://user@device/…`` and files
        go up under them before ``register/``, so another user's id is never anyone else's to claim. An id under
        which an attachment holds another user's data is refused too (409, see :meth:`Attachment.check_claim`).
        """
        self.check_not_future(obj.client_stamp)
        if not id_names_user(obj.oaio_id, actor.username):
            raise Forbidden(
                f"{obj.oaio_id!r} is not an id of {actor.username!r}: an id registered by {actor.username!r} names"
                " them as its user (app://user@device/…, defused)"
            )
        with self._writing() as (db, stamp):
            existing = db.get(Object, obj.oaio_id)
            if existing is not None:
                right = self._right(db, obj.oaio_id, actor.username)
                if right == NO_ACCESS_RIGHT:  # the id is taken, but the caller learns nothing more
                    raise Conflict(f"the id {obj.oaio_id!r} is already registered")
                raise Conflict(f"{obj.oaio_id!r} is already registered", object=self.object_dict(existing, right, lean))
            for attachment in self.attachments:
                attachment.check_claim(db, obj.oaio_id, actor.username)
            row = Object(
                oaio_id=obj.oaio_id,
                client_stamp=obj.client_stamp,
                client_values=obj.client_values,
                server_stamp="",
                server_values={},
                csh_id=obj.csh_id,
                username=actor.username,
                device_id=actor.device_id or obj.device_id,
                app_id=actor.app_id or obj.app_id,
                creator=actor.username,
                registered=stamp,
                change_stamp=stamp,
            )
            db.add(row)
            db.flush()
            self._add_version(db, row, stamp)
            db.add(
                Subscription(
                    oaio_id=obj.oaio_id, username=actor.username, access_right=CREATE_ACCESS_RIGHT, change_stamp=stamp
                )
            )
            self._unbury(db, obj.oaio_id, actor.username)
            wake_feeds(db, [actor.username])
            self._log(db, actor, stamp, "register", obj.oaio_id)
            return self.object_dict(row, CREATE_ACCESS_RIGHT, lean)

    @staticmethod
    def _add_version(db: Session, row: Object, stamp: str) -> None:
        db.add(
            Version(
                oaio_id=row.oaio_id,
                stamp=row.client_stamp,
                values=row.client_values,
                csh_id=row.csh_id,
                username=row.username,
                device_id=row.device_id,
                app_id=row.app_id,
                created=stamp,
            )
        )

    def upload(self, actor: Actor, obj: OaiObject, lean: bool = False) -> dict[str, Any]:
        """Store a new version; needs ``U``; 409 with the stored object unless it follows the stored newest
        (``lean``: as :meth:`object_dict`)."""
        self.check_not_future(obj.client_stamp)
        with self._writing() as (db, stamp):
            row, right = self._readable(db, obj.oaio_id, actor)
            if not right_grants(right, UPDATE_ACCESS_RIGHT):
                raise Forbidden(f"{actor.username!r} may only read {obj.oaio_id!r} (right {right})")
            if obj.server_stamp != row.client_stamp or obj.client_stamp <= row.client_stamp:
                raise Conflict(
                    f"the hub holds version {row.client_stamp}; the upload is based on {obj.server_stamp or 'nothing'}"
                    f" with stamp {obj.client_stamp}: pull, merge and retry",
                    object=self.object_dict(row, right, lean),
                )
            row.server_stamp, row.server_values = row.client_stamp, row.client_values
            row.client_stamp, row.client_values = obj.client_stamp, obj.client_values
            row.csh_id = obj.csh_id
            row.username = actor.username
            row.device_id = actor.device_id or obj.device_id
            row.app_id = actor.app_id or obj.app_id
            row.change_stamp = stamp
            self._add_version(db, row, stamp)
            wake_readers(db, obj.oaio_id)
            self._log(db, actor, stamp, "upload", obj.oaio_id, obj.client_stamp)
            return self.object_dict(row, right, lean)

    def delete(self, actor: Actor, oaio_id: str) -> None:
        """Remove an object with its versions and subscriptions; needs ``D``; every subscriber gets a tombstone."""
        with self._removing() as (db, stamp, removal):
            _row, right = self._readable(db, oaio_id, actor)
            if not right_grants(right, DELETE_ACCESS_RIGHT):
                raise Forbidden(f"{actor.username!r} may not delete {oaio_id!r} (right {right})")
            self._bury(db, oaio_id, self._delete_object(db, oaio_id), stamp)
            removal.oaio_ids.append(oaio_id)
            self._log(db, actor, stamp, "delete", oaio_id)

    def list_objects(self, actor: Actor, since: str = "", lean: bool = False) -> tuple[str, list[dict[str, Any]], int]:
        """``(cursor, objects, deleted count)``: what the actor may read, changed after ``since`` if given
        (``lean``: as :meth:`object_dict`, and the previous values are not even read)."""
        if since:
            self.check_since(since)
        query = (
            sa.select(Object, Subscription.access_right)
            .join(Subscription, Subscription.oaio_id == Object.oaio_id)
            .where(Subscription.username == actor.username)
            .order_by(Object.client_stamp, Object.oaio_id)
        )
        if since:
            query = query.where(Object.oaio_id.in_(changed_ids(actor.username, since)))
        if lean:
            query = query.options(defer(Object.server_values))
        with self.sessions() as db:
            cursor = self.cursor(db)
            items = [self.object_dict(row, right, lean) for row, right in db.execute(query)]
            deleted: int | None = 0
            if since:
                deleted = db.scalar(
                    sa.select(sa.func.count())
                    .select_from(Tombstone)
                    .where(Tombstone.username == actor.username, Tombstone.stamp > since)
                )
        return cursor, items, int(deleted or 0)

    def current_stamp(self) -> str:
        """The hub clock."""
        return now_stamp()

    # -- part A: subscriptions and users --------------------------------------------------------------------------

    def subscribe(self, actor: Actor, oaio_id: str, username: str, right: str) -> int:
        """Grant, change or (with ``x``) remove ``username``'s right on an object; the subscription's ``Pid``.

        Removing answers the removed subscription's ``Pid``, or 0 when there was none.
        """
        with self._writing() as (db, stamp):
            _row, own = self._readable(db, oaio_id, actor)
            if db.get(User, username) is None:
                if not actor.is_supervisor:
                    raise NotFound(f"no user named {username!r}")
                if right == NO_ACCESS_RIGHT:
                    return 0
                db.add(User(username=username, password_hash=None, is_supervisor=False, created=stamp))
                db.flush()
            sub = db.scalar(
                sa.select(Subscription).where(Subscription.oaio_id == oaio_id, Subscription.username == username)
            )
            if sub is not None and sub.access_right == CREATE_ACCESS_RIGHT:
                raise Forbidden(f"{username!r} created {oaio_id!r}; the creator's subscription cannot change")
            if right == NO_ACCESS_RIGHT:
                return self._unsubscribe(db, actor, own, sub, stamp)
            if right == CREATE_ACCESS_RIGHT:
                raise Forbidden("nobody is granted C: only the creator holds it")
            if not right_grants(own, DELETE_ACCESS_RIGHT):
                raise Forbidden(f"granting rights on {oaio_id!r} needs C or D; {actor.username!r} holds {own}")
            if not right_grants(own, right):
                raise Forbidden(f"{actor.username!r} holds {own} and cannot grant the stronger right {right}")
            if sub is None:
                sub = Subscription(oaio_id=oaio_id, username=username, access_right=right, change_stamp=stamp)
                db.add(sub)
                self._unbury(db, oaio_id, username)
                wake_feeds(db, [username])
            elif sub.access_right != right:
                sub.access_right, sub.change_stamp = right, stamp
                wake_feeds(db, [username])
            db.flush()
            self._log(db, actor, stamp, "subscribe", oaio_id, f"{username}:{right}")
            return sub.pid

    def _unsubscribe(self, db: Session, actor: Actor, own: str, sub: Subscription | None, stamp: str) -> int:
        if sub is None:
            return 0
        if sub.username != actor.username and not right_grants(own, DELETE_ACCESS_RIGHT):
            raise Forbidden(f"removing another user's subscription needs C or D; {actor.username!r} holds {own}")
        pid, oaio_id, username = sub.pid, sub.oaio_id, sub.username
        db.delete(sub)
        self._bury(db, oaio_id, [username], stamp)
        self._log(db, actor, stamp, "unsubscribe", oaio_id, username)
        return pid

    def user_rights(self, actor: Actor, oaio_id: str) -> list[dict[str, str]]:
        """Every user with their right on the object; all ``x`` when the actor may not read it (or it is unknown)."""
        with self.sessions() as db:
            names = list(db.scalars(sa.select(User.username).order_by(User.username)))
            rights: dict[str, str] = {}
            if self._right(db, oaio_id, actor.username) != NO_ACCESS_RIGHT:
                rows = db.execute(
                    sa.select(Subscription.username, Subscription.access_right).where(Subscription.oaio_id == oaio_id)
                )
                rights = {name: right for name, right in rows}
        return [{"username": name, "access_right": rights.get(name, NO_ACCESS_RIGHT)} for name in names]

    def wipe_user(self, actor: Actor, username: str) -> None:
        """Remove a user (a supervisor, or the user themself) with subscriptions, sessions and log entries."""
        if not (actor.is_supervisor or username == actor.username):
            raise Forbidden(f"only a supervisor or {username!r} themself may wipe {username!r}")
        with self._removing() as (db, stamp, removal):
            if db.get(User, username) is None:
                raise NotFound(f"no user named {username!r}")
            self._wipe(db, username, removal)
            if actor.username != username:
                self._log(db, actor, stamp, "wipe_user", None, username)

    def _wipe(self, db: Session, username: str, removal: Removal) -> None:
        """Delete a user's rows; objects nobody else subscribes to go too (both noted in ``removal``)."""
        oaio_ids = list(db.scalars(sa.select(Subscription.oaio_id).where(Subscription.username == username)))
        for table in (Subscription, Tombstone, LogEntry, LoginSession):
            db.execute(sa.delete(table).where(table.username == username))
        db.execute(sa.delete(User).where(User.username == username))
        removal.usernames.append(username)
        for oaio_id in oaio_ids:
            if db.scalar(sa.select(sa.func.count()).where(Subscription.oaio_id == oaio_id)) == 0:
                self._delete_object(db, oaio_id)
                removal.oaio_ids.append(oaio_id)

    # -- part B -------------------------------------------------------------------------------------------------

    def deleted_since(self, actor: Actor, since: str) -> tuple[str, list[str]]:
        """``(cursor, ids)`` that became unreadable for the actor after ``since``."""
        self.check_since(since)
        with self.sessions() as db:
            cursor = self.cursor(db)
            ids = list(
                db.scalars(
                    sa.select(Tombstone.oaio_id)
                    .where(Tombstone.username == actor.username, Tombstone.stamp > since)
                    .order_by(Tombstone.stamp, Tombstone.oaio_id)
                )
            )
        return cursor, ids

    def has_changes(self, username: str, since: str) -> tuple[str, bool]:
        """``(cursor, changed)``: changed is True when an object ``username`` may read changed, or one became
        unreadable, after ``since``, up to the cursor at least (see the module docstring)."""
        with self.sessions() as db:
            cursor = self.cursor(db)
            if cursor <= since:
                return cursor, False
            changed = db.scalar(
                sa.select(Subscription.pid)
                .where(Subscription.username == username, Subscription.oaio_id.in_(changed_ids(username, since)))
                .limit(1)
            )
            if changed is not None:
                return cursor, True
            buried = db.scalar(
                sa.select(Tombstone.id).where(Tombstone.username == username, Tombstone.stamp > since).limit(1)
            )
        return cursor, buried is not None

    def origin(self, actor: Actor, oaio_id: str) -> dict[str, str]:
        """Who registered an object the actor may read, and when by the hub clock: the hub's records, never the id.

        ``creator`` stays the registering user's name after that user is wiped (their ``C`` subscription goes).
        """
        with self.sessions() as db:
            row, _right = self._readable(db, oaio_id, actor)
            return {"oaio_id": row.oaio_id, "creator": row.creator, "registered": row.registered}

    def versions(self, actor: Actor, oaio_id: str, stamp: str | None = None) -> list[dict[str, Any]]:
        """Every stored version of an object the actor may read, newest first (only ``stamp``'s, when given)."""
        with self.sessions() as db:
            self._readable(db, oaio_id, actor)
            query = sa.select(Version).where(Version.oaio_id == oaio_id)
            if stamp is not None:
                query = query.where(Version.stamp == stamp)
            rows = db.scalars(query.order_by(Version.stamp.desc()))
            return [
                {
                    "stamp": row.stamp,
                    "values": row.values,
                    "csh_id": row.csh_id,
                    "username": row.username,
                    "device_id": row.device_id,
                    "app_id": row.app_id,
                    "created": row.created,
                }
                for row in rows
            ]
