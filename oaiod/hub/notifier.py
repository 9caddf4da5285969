"""The change feed's waiting room: long polls of the hub's users, woken by the commits that concern them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


class ChangeNotifier:
    """Wakes the long polls of the users a commit concerns; commits happen in worker threads, waiters in the loop.

    Each user with a parked poll has one event, set (and dropped) by the next commit that names the user
    (``HubService.on_commit``): a commit costs each waiter of those users one check and nobody else anything. The
    feed holds a slot (:meth:`parked`) while it waits, so :meth:`parked_polls` counts a user's waiting polls for its
    cap. Everything but the ``*_threadsafe`` methods runs in the event loop.

    It also knows the newest stamp heard of (commits named to it, cursors read from the database), so a poll whose
    ``since`` is not older skips its check: a commit it has not heard of yet wakes the poll once it is heard of.
    Whoever may have missed commits (the change bus, reconnected) reads the database's cursor after it listens again
    and hands it to :meth:`resync_threadsafe`.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}  #: user → the event the next commit naming the user sets
        self._parked: dict[str, int] = {}  #: user → polls waiting now
        self._waiting = 0  #: polls waiting now, all users (read by the metrics, from any thread)
        self._newest = ""  #: the newest change stamp heard of: every commit up to it is known
        self.closed = False

    def bind(self) -> None:
        """Attach to the running event loop (at application start)."""
        self._loop = asyncio.get_running_loop()
        self.closed = False

    def parked_polls(self, username: str) -> int:
        """How many polls of ``username`` wait now."""
        return self._parked.get(username, 0)

    def waiting(self) -> int:
        """How many polls wait now, all users together."""
        return self._waiting

    @contextmanager
    def parked(self, username: str) -> Iterator[None]:
        """Count a poll of ``username`` as waiting for the block, however it ends (answer, timeout, cancel)."""
        self._parked[username] = self._parked.get(username, 0) + 1
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
            left = self._parked.pop(username) - 1
            if left:
                self._parked[username] = left
            else:
                self._events.pop(username, None)

    def event(self, username: str) -> asyncio.Event:
        """The event the next commit naming ``username`` sets; take it *before* checking for changes, then wait on
        it (inside :meth:`parked`: the user's last poll drops it)."""
        event = self._events.get(username)
        if event is None:
            event = self._events[username] = asyncio.Event()
        return event

    def must_check(self, since: str) -> bool:
        """Whether a poll ``since`` a stamp must ask the database (else nothing it may read changed since)."""
        return since < self._newest

    def heard(self, cursor: str) -> None:
        """Every commit up to ``cursor`` (read from the database) is known."""
        self._newest = max(self._newest, cursor)

    def _wake(self, usernames: Iterable[str], stamp: str = "") -> None:
        self._newest = max(self._newest, stamp)
        for name in usernames:
            event = self._events.pop(name, None)
            if event is not None:
                event.set()

    def _call_threadsafe(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # the loop closed between the check and the call
                pass

    def notify_threadsafe(self, stamp: str, usernames: frozenset[str]) -> None:
        """Wake the polls of ``usernames`` (``HubService.on_commit``, the change bus; from any thread)."""
        self._call_threadsafe(lambda: self._wake(usernames, stamp))

    def resync_threadsafe(self, cursor: str) -> None:
        """Commits up to ``cursor`` may have gone unheard: note it and wake every waiting poll to check."""

        def resync() -> None:
            self.heard(cursor)
            self._wake(list(self._events))

        self._call_threadsafe(resync)

    def close_threadsafe(self) -> None:
        """Release every waiter now (the hub is stopping)."""
        self.closed = True
        self._call_threadsafe(lambda: self._wake(list(self._events)))
