"""The hub's FastAPI application: transport rules shared by every route, and error answers.

- :class:`HubMiddleware` (pure ASGI, outermost): ``X-Oaiod-Hub`` on every answer (a 500 included); a
  ``csrftoken`` cookie on every GET answer when the request had none; request bodies are read up front and
  refused with 413 beyond ``body_limit`` (by ``Content-Length`` and by counting the bytes that arrive); at most
  :data:`LARGE_BODY_SLOTS` bodies over 1 MiB are handled at once, the next waits for a slot, then gets 429.
- What routes depend on (context ids, CSRF, the acting user, JSON bodies and answers) is in :mod:`oaiod.hub.deps`,
  the change feed's waiting room in :mod:`oaiod.hub.notifier`: routers import those, never this module.
- Every error is JSON ``{"error", "reason", ...}``; a client mistake never answers 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oaiod import __version__
from oaiod.errors import ValidationError
from oaiod.hub.deps import CSRF_COOKIE, SAFE_METHODS, HubJSONResponse, error_response
from oaiod.hub.errors import HubError, RangeNotSatisfiable, RateLimited
from oaiod.hub.notifier import ChangeNotifier
from oaiod.hub.observe import RequestObserver, RouteTemplates
from oaiod.hub.proxy import ForwardedHeaders, TrustedProxies
from oaiod.hub.service import HubService
from oaiod.hub.settings import HubSettings

log = logging.getLogger("oaiod.hub")

HUB_HEADER = "X-Oaiod-Hub"
STREAMED_PREFIXES = ("/api/hub/blobs/",)  #: routes that read their body themselves (the blob store)
LARGE_BODY = 1024 * 1024  #: a body above this (or of unannounced length) takes one of the hub's large-body slots
LARGE_BODY_SLOTS = 2  #: large bodies read, parsed and answered at once, hub-wide: bounds the memory they cost
LARGE_BODY_WAIT = 30.0  #: seconds a large body waits for a slot; then 429 with Retry-After


class HubMiddleware:
    """Hub header, CSRF cookie hand-out, request body limit, and the large-body slots (see the module docstring).

    Parsing and validating a JSON body costs the hub many times its size (a 20 MB list of a million paths: ~500
    MiB at its peak), so at most :data:`LARGE_BODY_SLOTS` bodies above :data:`LARGE_BODY` are handled at once,
    from reading the body to the end of the answer; the next waits up to :data:`LARGE_BODY_WAIT`, then gets 429.
    """

    def __init__(self, app: ASGIApp, body_limit: int) -> None:
        self.app = app
        self.body_limit = body_limit
        self.large_bodies = asyncio.Semaphore(LARGE_BODY_SLOTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        new_csrf = ""
        # the cookie is for the API's clients: not for the root paths a load balancer or a scraper probes
        if (
            scope["method"] == "GET"
            and scope["path"].startswith("/api/")
            and f"{CSRF_COOKIE}=" not in headers.get("cookie", "")
        ):
            new_csrf = secrets.token_urlsafe(32)

        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(HUB_HEADER.encode(), __version__.encode())]
                if new_csrf:
                    cookie = f"{CSRF_COOKIE}={new_csrf}; Path=/; SameSite=Lax; Max-Age=31449600"
                    if scope["scheme"] == "https":  # directly or through a trusted proxy (oaiod.hub.proxy)
                        cookie += "; Secure"
                    extra.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        slot = False
        if scope["method"] not in SAFE_METHODS and not scope["path"].startswith(STREAMED_PREFIXES):
            slot = _is_large(headers)
            if slot and not await self._take_slot():
                busy = error_response(429, "rate_limited", "the hub is busy with other large requests; retry")
                busy.headers["Retry-After"] = "5"
                await busy(scope, receive, send_wrapper)
                return
            body = await self._read_body(headers, receive)
            if isinstance(body, HubJSONResponse):
                await body(scope, receive, send_wrapper)
                self._release_slot(slot)
                return
            receive = _replay(body, receive)
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if started:  # the answer is under way: the server can only cut the connection
                raise
            # answered here, not by Starlette's outermost error middleware, so the 500 carries the hub header too
            log.exception("hub: %s %s failed; the request was rolled back", scope["method"], scope["path"])
            answer = error_response(500, "internal", "the hub failed on this request; its log has the details")
            await answer(scope, receive, send_wrapper)
        finally:
            self._release_slot(slot)

    async def _take_slot(self) -> bool:
        try:
            await asyncio.wait_for(self.large_bodies.acquire(), LARGE_BODY_WAIT)
        except TimeoutError:
            return False
        return True

    def _release_slot(self, taken: bool) -> None:
        if taken:
            self.large_bodies.release()

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | HubJSONResponse:
        limit = self.body_limit
        length = headers.get("content-length", "")
        if length and (not length.isascii() or not length.isdigit()):
            return error_response(400, "bad_request", "Content-Length is not a number")
        if length and int(length) > limit:
            return error_response(413, "too_large", f"the body is {length} bytes; the hub accepts at most {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return error_response(400, "bad_request", "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return error_response(413, "too_large", f"the body is more than the hub's limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _is_large(headers: dict[str, str]) -> bool:
    """True for a body above :data:`LARGE_BODY`, or chunked (its length not announced): it takes a slot."""
    length = headers.get("content-length", "")
    if length.isascii() and length.isdigit():
        return int(length) > LARGE_BODY
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# -- error answers ----------------------------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HubError)
    async def hub_error(_request: Request, exc: HubError) -> HubJSONResponse:
        response = HubJSONResponse(exc.body(), status_code=exc.status)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, RangeNotSatisfiable):
            response.headers["Content-Range"] = f"bytes */{exc.size}"
        return response

    @app.exception_handler(ValidationError)
    async def validation_error(_request: Request, exc: ValidationError) -> HubJSONResponse:
        return error_response(400, "validation", exc.reason, field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(_request: Request, exc: RequestValidationError) -> HubJSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        fld = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
        return error_response(400, "validation", str(first.get("msg", "invalid request"))[:200], field=fld)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> HubJSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        code = codes.get(exc.status_code, "internal" if exc.status_code >= 500 else "bad_request")
        return error_response(exc.status_code, code, str(exc.detail)[:200])

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> HubJSONResponse:
        log.exception("hub: %s %s failed; the request was rolled back", request.method, request.url.path)
        return error_response(500, "internal", "the hub failed on this request; its log has the details")


def create_app(settings: HubSettings, service: HubService | None = None) -> FastAPI:
    """The hub application over ``service`` (opened from ``settings`` when not given)."""
    from oaiod.hub.blobbatch import mount as mount_blob_batches
    from oaiod.hub.blobs import mount as mount_blobs
    from oaiod.hub.browse import router as browse_router
    from oaiod.hub.feed import FEATURES
    from oaiod.hub.feed import router as feed_router  # routes import this module's dependencies
    from oaiod.hub.health import Readiness
    from oaiod.hub.health import router as health_router
    from oaiod.hub.metrics import HubMetrics
    from oaiod.hub.metrics import router as metrics_router
    from oaiod.hub.openapi import OPENAPI_PATH
    from oaiod.hub.openapi import install as install_openapi
    from oaiod.hub.routes import router as core_router
    from oaiod.hub.shareroutes import mount as mount_sharing
    from oaiod.hub.web import mount as mount_web

    service = service or HubService.open(settings)
    notifier = ChangeNotifier()
    service.on_commit = notifier.notify_threadsafe

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier.bind()
        notifier.heard(await asyncio.to_thread(lambda: service.sync_stamp))  # commits before the start
        service.bus.listen(notifier.notify_threadsafe, notifier.resync_threadsafe)  # other processes' commits
        yield
        app.state.archives.close()
        notifier.close_threadsafe()
        await asyncio.to_thread(service.bus.close)

    app = FastAPI(
        title="oaiod hub",
        version=__version__,
        lifespan=lifespan,
        openapi_url=OPENAPI_PATH,
        docs_url=None,
        redoc_url=None,
        default_response_class=HubJSONResponse,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.notifier = notifier
    app.state.features = list(FEATURES)  # a mounted extension (the blob store) appends its name
    app.state.metrics = metrics = HubMetrics(notifier.waiting)
    _install_error_handlers(app)
    app.include_router(core_router, prefix="/api")
    app.include_router(feed_router, prefix="/api")
    app.include_router(browse_router, prefix="/api")
    mount_blobs(app)
    mount_blob_batches(app)
    mount_sharing(app)
    app.state.readiness = Readiness(service, app.state.blobs.check_ready)
    app.include_router(health_router)  # /healthz, /readyz and /metrics: at the root, for the machines that probe
    app.include_router(metrics_router)
    mount_web(app)  # the browser app under /web/ (oaiod.hub.web)
    install_openapi(app)
    app.add_middleware(HubMiddleware, body_limit=settings.body_limit)
    app.add_middleware(RequestObserver, metrics=metrics, routes=RouteTemplates.of(app))  # sees HubMiddleware's answers
    app.add_middleware(ForwardedHeaders, proxies=TrustedProxies(settings.trusted_proxies))  # outermost: first
    return app
