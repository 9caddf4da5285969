"""``GET /healthz`` and ``GET /readyz``: whether a load balancer should keep and send traffic to this hub process.

Both sit at the root, beside ``/api/``, need no session or CSRF token and set no cookie; their answers carry
nothing about users or data.

- ``/healthz`` — the process runs and its event loop answers: 200 ``{"status": "ok", "version"}``. Touches
  nothing else, so a slow database never makes a supervisor restart a healthy process.
- ``/readyz`` — the process can serve: the database answers a query that reads it, the blob store's upload
  folder takes a new file and its content store answers (a bucket: ``HeadBucket``). 200 ``{"ready": true,
  "checks": {...}}``, else 503 ``{"error": "not_ready", "reason", "checks"}``; each check says ``ok`` or what
  is wrong, without a URL or password. A check gets :data:`CHECK_TIMEOUT` seconds; one still running from an
  earlier probe (a database that hangs) fails at once.

On SQLite the database check opens the file anew (the pooled connections keep a file open that may since have
been moved, deleted or made unreadable); on a server database it takes a pooled connection (pre-pinged) and runs
``SELECT 1``. A change of readiness is logged once, not at every probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from oaiod import __version__
from oaiod.hub.deps import HubJSONResponse, error_response
from oaiod.hub.service import HubService

log = logging.getLogger("oaiod.hub")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
CHECK_TIMEOUT = 5.0  #: seconds a readiness check may take


class Readiness:
    """The checks behind ``/readyz`` for one hub: its database and its blob store (``check_blobs`` raises when
    new uploads cannot be staged or the content store does not answer)."""

    def __init__(self, service: HubService, check_blobs: Callable[[], None]) -> None:
        self.service = service
        self._check_blobs = check_blobs
        self._running = {"database": threading.Lock(), "blobs": threading.Lock()}
        self._was_ready: bool | None = None
        self._details: dict[str, str] = {}  #: check → the full error of its last failure, for the log only

    async def checks(self) -> dict[str, str]:
        """Each check's name → ``ok`` or what is wrong; the checks run at once, in worker threads."""
        names = ("database", "blobs")
        results = await asyncio.gather(self._run("database", self._database), self._run("blobs", self._blobs))
        found = dict(zip(names, results, strict=True))
        self._log_change(found)
        return found

    async def _run(self, name: str, check: Callable[[], None]) -> str:
        lock = self._running[name]
        if not lock.acquire(blocking=False):
            return f"the previous check has not returned after {CHECK_TIMEOUT:g} s"

        def guarded() -> None:
            try:
                check()
            finally:
                lock.release()

        # shielded: a check that outlives its timeout keeps its lock until it returns, so checks never pile up
        task = asyncio.ensure_future(run_in_threadpool(guarded))
        try:
            await asyncio.wait_for(asyncio.shield(task), CHECK_TIMEOUT)
        except TimeoutError:
            self._details.pop(name, None)
            return f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:
            self._details[name] = str(exc).strip().replace("\n", " ")[:500]
            return _describe(exc)
        return "ok"

    def _database(self) -> None:
        url = self.service.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            uri = Path(url.database).resolve().as_uri() + "?mode=rw"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=CHECK_TIMEOUT)) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return
        with self.service.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()

    def _blobs(self) -> None:
        self._check_blobs()

    def _log_change(self, found: dict[str, str]) -> None:
        ready = all(result == "ok" for result in found.values())
        if ready != self._was_ready:
            if ready:
                log.info("hub ready: database and blob store answer")
            else:
                problems = "; ".join(
                    f"{name}: {self._details.get(name) or result}" for name, result in found.items() if result != "ok"
                )
                log.warning("hub not ready (/readyz answers 503 until this clears): %s", problems)
        self._was_ready = ready


def _describe(exc: Exception) -> str:
    """What failed, without the database URL or its password: the exception's class and its first line when it is
    an OS error (a path of the hub's own), else only the class (driver messages may name hosts and users)."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(exc, sqlite3.Error):
        return f"sqlite3: {str(exc).splitlines()[0][:120]}"
    original = getattr(exc, "orig", None)
    return f"{type(exc).__name__}" + (f" ({type(original).__name__})" if original is not None else "")


router = APIRouter()


@router.get(HEALTH_PATH)
async def healthz() -> dict[str, Any]:
    """The hub process runs and its event loop answers (nothing else touched): for a liveness probe."""
    return {"status": "ok", "version": __version__}


@router.get(READY_PATH, responses={503: {"description": "not ready: {error, reason, checks}"}})
async def readyz(request: Request) -> HubJSONResponse:
    """The database and the blob store answer: for a load balancer's readiness probe."""
    readiness: Readiness = request.app.state.readiness
    found = await readiness.checks()
    failed = [f"{name}: {result}" for name, result in found.items() if result != "ok"]
    if failed:
        return error_response(503, "not_ready", "; ".join(failed), checks=found)
    return HubJSONResponse({"ready": True, "checks": found})
