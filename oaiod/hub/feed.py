"""Part B routes (``docs/hub-api.md``): features, deletions since a cursor, the long-poll change feed, versions.

The change feed waits without holding a database connection or a worker thread: it checks in a worker thread,
then awaits the :class:`~oaiod.hub.notifier.ChangeNotifier` event that the next commit concerning the caller sets,
through this hub process or another one on the database (:mod:`oaiod.hub.changebus`), or the client closing its
connection.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from oaiod import __version__
from oaiod.errors import ValidationError
from oaiod.hub.deps import ActorDep, get_service, json_answer
from oaiod.hub.errors import RateLimited
from oaiod.hub.notifier import ChangeNotifier
from oaiod.hub.service import HubService
from oaiod.model import validate_oaio_id, validate_stamp

router = APIRouter(prefix="/hub")

#: what ``hub/features/`` lists; the blob store adds "blobs" when it is mounted
FEATURES = ["since", "conflict409", "changes", "versions", "origin", "lean"]


@router.get("/features/")
def features(request: Request, _actor: ActorDep) -> dict[str, Any]:
    return {"version": __version__, "features": list(request.app.state.features)}


@router.get("/deleted/")
def deleted(request: Request, actor: ActorDep, since: str | None = None) -> dict[str, Any]:
    """Ids that became unreadable for the caller after ``since``."""
    cursor, ids = get_service(request).deleted_since(actor, validate_stamp(since, "since"))
    return {"deleted": ids, "sync_stamp": cursor}


@router.get("/versions/{oaio_id}")
def versions(request: Request, oaio_id: str, actor: ActorDep, stamp: str | None = None) -> Any:
    """Every stored version of an object the caller may read, newest first; only the one of ``stamp`` when given
    (a device asking whether its commit landed after the answer was lost)."""
    only = validate_stamp(stamp, "stamp") if stamp is not None else None
    return json_answer(get_service(request).versions(actor, validate_oaio_id(oaio_id), only))


@router.get("/origin/{oaio_id}")
def origin(request: Request, oaio_id: str, actor: ActorDep) -> dict[str, str]:
    """Who registered an object the caller may read and the hub's registration stamp (clients trust only this)."""
    return get_service(request).origin(actor, validate_oaio_id(oaio_id))


def _timeout(value: str | None, default: float, most: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ValidationError("timeout", f"must be a number of seconds, got {value[:20]!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValidationError("timeout", "must be a number of seconds ≥ 0")
    return min(seconds, most)


@router.get("/changes/")
async def changes(
    request: Request, actor: ActorDep, since: str | None = None, timeout: str | None = None
) -> dict[str, Any]:
    """Long poll: answers when an object the caller may read changes after ``since``, else after ``timeout``.

    At most ``feed_waiters_per_user`` polls of one user wait at once; the next answers 429. A poll's slot is freed
    however it ends, a client closing its connection included.
    """
    service: HubService = get_service(request)
    notifier: ChangeNotifier = request.app.state.notifier
    checked = validate_stamp(since, "since")
    settings = service.settings
    wait = _timeout(timeout, settings.long_poll_default, settings.long_poll_max)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    most = settings.feed_waiters_per_user
    if notifier.parked_polls(actor.username) >= most:
        raise RateLimited(
            f"{actor.username!r} has {most} change-feed polls waiting already, the most one user may",
            retry_after=math.ceil(settings.long_poll_default),
        )
    with notifier.parked(actor.username):
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            return await _wait_for_change(service, notifier, actor.username, checked, deadline, gone)
        finally:
            gone.cancel()


async def _wait_for_change(
    service: HubService,
    notifier: ChangeNotifier,
    username: str,
    checked: str,
    deadline: float,
    gone: asyncio.Task[None],
) -> dict[str, Any]:
    """Check, and wait for a wake-up, until a change concerns ``username``, the deadline passes, the hub stops or
    the client is ``gone``."""
    loop = asyncio.get_running_loop()
    while True:
        event = notifier.event(username)  # taken before the check, so a commit after the check still wakes us
        if notifier.must_check(checked):
            cursor, changed = await run_in_threadpool(service.has_changes, username, checked)
            notifier.heard(cursor)
            if changed:
                return {"changed": True, "sync_stamp": cursor}
            checked = max(checked, cursor)  # nothing up to the cursor concerns this caller
        remaining = deadline - loop.time()
        if remaining <= 0 or notifier.closed or gone.done():
            return {"changed": False, "sync_stamp": checked}
        woken = asyncio.ensure_future(event.wait())
        await asyncio.wait((woken, gone), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        woken.cancel()


async def _client_gone(request: Request) -> None:
    """Returns once the client has closed its connection (the answer would go nowhere)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
