"""The status page's guard: every request passes :class:`Guard` first (the package docstring says what it checks
and why). An ASGI middleware rather than a per-route dependency, so no route can forget it — the event stream and
the static files included — and so every answer, a refusal too, carries the security headers."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from oaiod.daemon.ui.server import UiServer

COOKIE = "oaiod_ui"
TOKEN_HEADER = "x-api-key"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # "no-referrer" makes a form POST say Origin: null
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


class Guard:
    """ASGI middleware: security headers on every answer; 403 for a wrong ``Host``, a missing or wrong token
    (except ``/login`` and ``/static/``) and a cross-origin POST."""

    def __init__(self, app: ASGIApp, server: UiServer, token: str) -> None:
        self.app = app
        self.server = server
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        headers = Headers(scope=scope)
        reason = self.refusal(scope, headers)
        if reason:
            await refused(reason, headers)(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)

    def refusal(self, scope: Scope, headers: Headers) -> str:
        """Why the request is refused ("" when it may go on)."""
        expected = f"127.0.0.1:{self.server.port}"
        if headers.get("host") != expected:
            return f"this page answers only as http://{expected}/"
        path = str(scope.get("path", ""))
        if path != "/login" and not path.startswith("/static/") and not self.authenticated(headers):
            return "not logged in: open the page with `oaiod ctl ui`"
        if scope.get("method") not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and origin != f"http://{expected}":
                return "a request from another site"
            if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return "a request from another site"
        return ""

    def authenticated(self, headers: Headers) -> bool:
        given = headers.get(TOKEN_HEADER) or _cookie(headers.get("cookie", ""), COOKIE)
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def refused(reason: str, headers: Headers) -> Response:
    """403: a short page for a browser, JSON for a script."""
    if "text/html" in headers.get("accept", ""):
        body = f"<!doctype html><title>oaiod: refused</title><h1>Refused</h1><p>{_escape(reason)}</p>"
        return HTMLResponse(body, status_code=403)
    return JSONResponse({"detail": reason}, status_code=403)


def _escape(text: str) -> str:
    import markupsafe

    return str(markupsafe.escape(text))
