"""How a commit reaches the change feeds of every hub process on the database (the feed itself: :mod:`.feed`).

A hub process wakes its own waiting polls after each commit (``HubService.on_commit``). With one process per
database (SQLite) that is all: :class:`LocalBus`. On PostgreSQL several processes, on several machines, serve one
database, and a commit through one must wake the polls parked in the others: :class:`PostgresBus`.

- A write transaction that concerns users sends ``NOTIFY oaiod_hub_changes`` with
  ``{"s": STAMP, "p": SENDER, "u": [USER, …]}`` before it commits; PostgreSQL delivers it only if the transaction
  commits, and delivers notifications in commit order. Past PostgreSQL's 8000-byte payload limit the names are
  split over several notifications of the same transaction.
- Each process listens on one connection of its own (one thread), however many polls wait in it; it skips its own
  notifications (``SENDER``: a random id per process) and hands the names to the waiting room, which wakes only
  those users' polls.
- Notifications sent while the listening connection is down are lost: once it listens again, it reads the
  change clock and every waiting poll is woken to check once against it (one query; finding nothing, it waits
  on). The same happens when it starts listening.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

log = logging.getLogger("oaiod.hub")

CHANNEL = "oaiod_hub_changes"
PAYLOAD_BYTES = 7000  #: a notification's payload at most (PostgreSQL refuses more than 8000 bytes)
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)  #: seconds between attempts to get the listening connection back

_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")

Wake = Callable[[str, frozenset[str]], None]
Resync = Callable[[str], None]


class ChangeBus(ABC):
    """Carries ``(stamp, users)`` of each commit to the other hub processes on the database."""

    @abstractmethod
    def publish(self, db: Session, stamp: str, usernames: frozenset[str]) -> None:
        """Inside a write transaction, before it commits: the other processes learn of it iff it commits."""

    @abstractmethod
    def listen(self, wake: Wake, resync: Resync) -> None:
        """Start calling ``wake(stamp, users)`` for the other processes' commits (from another thread), and
        ``resync(cursor)`` when those up to ``cursor`` may have been missed."""

    @abstractmethod
    def close(self) -> None:
        """Stop listening (returns promptly; safe to call twice or without :meth:`listen`)."""


class LocalBus(ChangeBus):
    """One hub process per database: nothing to carry."""

    def publish(self, db: Session, stamp: str, usernames: frozenset[str]) -> None:
        pass

    def listen(self, wake: Wake, resync: Resync) -> None:
        pass

    def close(self) -> None:
        pass


def payloads(stamp: str, sender: str, usernames: Iterable[str]) -> Iterator[str]:
    """The notifications of one commit: each names some of ``usernames`` and stays under :data:`PAYLOAD_BYTES`."""
    batch: list[str] = []
    size = 0
    for name in sorted(usernames):
        cost = len(json.dumps(name).encode()) + 1
        if batch and size + cost > PAYLOAD_BYTES - 100:
            yield json.dumps({"s": stamp, "p": sender, "u": batch})
            batch, size = [], 0
        batch.append(name)
        size += cost
    if batch:
        yield json.dumps({"s": stamp, "p": sender, "u": batch})


def parse_payload(payload: str) -> tuple[str, str, frozenset[str]] | None:
    """``(stamp, sender, users)`` of a notification, or None for one that is not ours."""
    try:
        message: Any = json.loads(payload)
        stamp, sender, names = message["s"], message["p"], message["u"]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(stamp, str) and isinstance(sender, str) and isinstance(names, list)):
        return None
    return stamp, sender, frozenset(name for name in names if isinstance(name, str))


class PostgresBus(ChangeBus):
    """``NOTIFY`` in the write transaction, ``LISTEN`` on one connection per process (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.sender = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  #: set while the listening connection is up (tests wait on it)

    def publish(self, db: Session, stamp: str, usernames: frozenset[str]) -> None:
        conn = db.connection()
        for payload in payloads(stamp, self.sender, usernames):
            conn.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload})

    def listen(self, wake: Wake, resync: Resync) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(wake, resync), name="oaiod-hub-listen", daemon=True)
        self._thread.start()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        try:  # the listener waits in the socket: a notification of our own gets it to notice at once
            with self._engine.begin() as conn:
                conn.execute(sa.select(sa.func.pg_notify(CHANNEL, f"stop {self.sender}")))
        except sa.exc.SQLAlchemyError:
            pass  # the database is gone: the listener notices by itself within its wait
        thread.join(timeout=10)

    def _connect(self) -> Any:
        """A connection of its own (not the pool's: it stays in ``LISTEN`` for the life of the process)."""
        import psycopg

        args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
        return psycopg.connect(*args, **{**kwargs, "autocommit": True})

    def _run(self, wake: Wake, resync: Resync) -> None:
        import psycopg

        attempt = 0
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if attempt:
                        log.info("hub: the change feed listens to the other hub processes again")
                    # commits before LISTEN took effect (or while it was down) went unheard: all are in the cursor
                    row = conn.execute("SELECT stamp FROM change_clock WHERE id = 1").fetchone()
                    resync(row[0] if row else "")
                    attempt = 0
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=5.0):
                            if self._stop.is_set():
                                break
                            self._deliver(note.payload, wake)
            except Exception as exc:  # psycopg's errors, and anything else: the feed must keep listening
                self.connected.clear()
                if self._stop.is_set():
                    break
                if not isinstance(exc, psycopg.Error):
                    log.exception("hub: the change feed's listener failed")
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning(
                    "hub: the change feed lost its connection to the database (%s); polls waiting in this process"
                    " miss changes made through other hub processes; reconnecting in %g s",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    delay,
                )
                self._stop.wait(delay)
        self.connected.clear()

    def _deliver(self, payload: str, wake: Wake) -> None:
        message = parse_payload(payload)
        if message is None:
            return
        stamp, sender, usernames = message
        if sender != self.sender and usernames:
            wake(stamp, usernames)
