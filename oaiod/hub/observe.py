"""Every request measured once: Prometheus counters (:mod:`oaiod.hub.metrics`) and one access-log line.

:class:`RequestObserver` is pure ASGI and sits just inside :class:`~oaiod.hub.proxy.ForwardedHeaders` (so it
sees the client a trusted proxy names) and outside :class:`~oaiod.hub.app.HubMiddleware` (so the 413, 429 and
500 answers that one gives are counted too). Routes are named by their template (:class:`RouteTemplates`), never
by the raw path, which holds ids.

The access log is one JSON object per request on the logger ``oaiod.hub.access``::

    {"method": "POST", "route": "/api/upload/", "status": 409, "ms": 12.4, "user": "bob", "client": "10.0.0.7",
     "in": 312, "out": 845}

``user`` is the user the request acted for, once its session was checked (``login`` is added when a supervisor
acted for someone else); ``in``/``out`` are body bytes. Nothing else of the request is logged — no query
string, header, cookie or body — so no password, session, CSRF token or upload id reaches the log. The load
balancer's probes (``/healthz``, ``/readyz``) and ``/metrics`` scrapes log at DEBUG, everything else at INFO.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import fastapi.routing
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oaiod import jsoncodec
from oaiod.hub.metrics import UNMATCHED, HubMetrics

access_log = logging.getLogger("oaiod.hub.access")

ACTOR_STATE = "oaiod_actor"  #: ``request.state`` attribute where ``current_actor`` leaves the request's Actor
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  #: logged at DEBUG: probes come every few seconds


class RouteTemplates:
    """Finds the template of the route a path and method reach, as the router does (first full match, else the
    first path match: a 405); :data:`~oaiod.hub.metrics.UNMATCHED` when none."""

    def __init__(self, routes: Iterable[tuple[str, frozenset[str]]]) -> None:
        self._routes = [(compile_path(path)[0], path, methods) for path, methods in routes]

    @classmethod
    def of(cls, app: Any) -> RouteTemplates:
        """The routes of a FastAPI application, included routers too (call once every route is added)."""
        contexts = getattr(fastapi.routing, "iter_route_contexts", None)
        found = app.routes if contexts is None else list(contexts(app.routes))  # FastAPI < 0.150: no contexts
        return cls(
            (route.path_format, frozenset(route.methods or ()))
            for route in found
            if getattr(route, "path_format", None) is not None
        )

    def template(self, method: str, path: str) -> str:
        partial = ""
        for regex, template, methods in self._routes:
            if regex.match(path):
                if method in methods or (method == "HEAD" and "GET" in methods):
                    return template
                partial = partial or template
        return partial or UNMATCHED


class RequestObserver:
    """Pure ASGI middleware: counts, times and logs every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, metrics: HubMetrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status, sizes = 0, [0, 0]  # bytes in, bytes out

        async def counting_receive() -> Message:
            message = await receive()
            sizes[0] += len(message.get("body", b""))
            return message

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sizes[1] += len(message.get("body", b""))
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, counting_receive, watching_send)
        finally:
            self.metrics.in_progress.dec()
            seconds = time.perf_counter() - started
            route = self.routes.template(scope["method"], scope["path"])
            self.metrics.observe(scope["method"], route, status, seconds)
            _log_access(scope, route, status, seconds, sizes, state.get(ACTOR_STATE))


def _log_access(scope: Scope, route: str, status: int, seconds: float, sizes: list[int], actor: Any) -> None:
    level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {"method": _printable(scope["method"]), "route": route, "status": status}
    fields["ms"] = round(seconds * 1000, 1)
    if actor is not None:
        fields["user"] = actor.username
        if actor.login != actor.username:
            fields["login"] = actor.login
    client = scope.get("client")
    fields["client"] = client[0] if client else ""
    fields["in"], fields["out"] = sizes
    access_log.log(level, "%s", jsoncodec.dumps(fields, ascii_fallback=True).decode(), extra={"access": fields})


_UNPRINTABLE = re.compile(r"[^A-Za-z]")


def _printable(method: str) -> str:
    """An HTTP method as sent, cut short and letters only (any token may come in)."""
    return _UNPRINTABLE.sub("?", method[:16])
