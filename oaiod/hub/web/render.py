"""The web app's plumbing: templates, the logged-in user, forms with CSRF, flash messages, security headers, HTML
error pages, and :func:`mount` (the package docstring states the contract page modules rely on).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oaiod.errors import ValidationError
from oaiod.hub.deps import CSRF_COOKIE, SESSION_COOKIE, get_service
from oaiod.hub.errors import BadRequest, CsrfFailed, HubError, NotAuthenticated, TooLarge
from oaiod.hub.observe import ACTOR_STATE
from oaiod.hub.service import Actor

PREFIX = "/web/"  #: every page of the web app lives under this path; the API stays under /api/
WEB_DEVICE_ID = WEB_APP_ID = "web"  #: device and app of what a user does in the web app (versions, action log)
FLASH_COOKIE = "oaiod_flash"
MAX_FORM_BYTES = 64 * 1024  #: a form body (the hub's middleware already bounds every body)
HERE = Path(__file__).parent

#: no inline script or style, nothing from another origin, no framing, forms post only here
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template: user-written strings are hostile
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer under :data:`PREFIX` (pages, errors, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(key.lower().encode(), value.encode()) for key, value in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_wrapper)


# -- the user and their forms ------------------------------------------------------------------------------------


def web_actor(request: Request) -> Actor:
    """The logged-in user (the session cookie, as the API); anonymous → :class:`NotAuthenticated` (the login page)."""
    login = get_service(request).session_user(request.cookies.get(SESSION_COOKIE, ""))
    if login is None:
        raise NotAuthenticated("log in first")
    actor = Actor(login.username, login.username, login.is_supervisor, WEB_DEVICE_ID, WEB_APP_ID)
    setattr(request.state, ACTOR_STATE, actor)  # for the access log (oaiod.hub.observe)
    return actor


WebActorDep = Annotated[Actor, Depends(web_actor)]


async def form_data(request: Request) -> dict[str, str]:
    """A posted form (``application/x-www-form-urlencoded``) whose ``csrf_token`` equals the ``csrftoken`` cookie
    (the API's double-submit rule); a repeated field keeps its last value."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest("send the form as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise TooLarge(f"a form holds at most {MAX_FORM_BYTES} bytes")
    try:
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = fields.pop("csrf_token", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise CsrfFailed("the form's CSRF token does not match this browser's: reload the page and try again")
    return fields


FormDep = Annotated[dict[str, str], Depends(form_data)]


def csrf_token(request: Request) -> tuple[str, bool]:
    """This browser's CSRF token and whether it is new (then the answer sets the cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if token:
        return token, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, token, max_age=31449600, path="/", samesite="lax", secure=request.url.scheme == "https"
    )


# -- answers ------------------------------------------------------------------------------------------------------


def url(path: str = "") -> str:
    """The URL of a page: ``url("objects")`` → ``/web/objects``."""
    return PREFIX + path.lstrip("/")


def static(name: str) -> str:
    return f"{PREFIX}static/{quote(name)}"


def flash(response: Response, text: str) -> Response:
    """Show ``text`` once, on the next page this browser renders."""
    value = base64.urlsafe_b64encode(json.dumps(text[:500]).encode()).decode()
    response.set_cookie(FLASH_COOKIE, value, path=PREFIX, httponly=True, samesite="lax", max_age=300)
    return response


def _take_flash(request: Request) -> str:
    raw = request.cookies.get(FLASH_COOKIE, "")
    if not raw:
        return ""
    try:
        text = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return ""
    return text if isinstance(text, str) else ""


def redirect(path: str, message: str = "") -> Response:
    """303 to a page of the web app (after a form), with a flash message when given."""
    response = RedirectResponse(url(path), status_code=303)
    return flash(response, message) if message else response


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context`` plus what every page sees (the package docstring lists it)."""
    token, new = csrf_token(request)
    message = _take_flash(request)
    actor = getattr(request.state, ACTOR_STATE, None)
    page = environment.get_template(template).render(
        request=request,
        user=actor if isinstance(actor, Actor) else None,
        csrf_token=token,
        prefix=PREFIX,
        url=url,
        static=static,
        flash=message,
        **context,
    )
    response = HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
    if new:
        set_csrf_cookie(request, response, token)
    if message:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


# -- errors -------------------------------------------------------------------------------------------------------

TITLES = {
    400: "Bad request",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    416: "Range not satisfiable",
    429: "Too many requests",
}

KEPT_ERROR_HEADERS = ("content-range", "retry-after")

Handler = Callable[[Request, Any], Awaitable[Response] | Response]


def error_page(request: Request, status: int, reason: str) -> Response:
    """The HTML answer to a refused request under :data:`PREFIX`; 401 sends the browser to the login page."""
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(url(f"login?next={quote(target, safe='')}"), status_code=303)
    title = TITLES.get(status, "Error" if status < 500 else "The hub failed")
    return render(request, "error.html", status=status, title=title, reason=reason, code=status)


def _html_under_prefix(previous: Handler, reason_of: Callable[[Any], tuple[int, str]]) -> Handler:
    async def handler(request: Request, exc: Any) -> Response:
        answer = previous(request, exc)
        json_answer = await answer if not isinstance(answer, Response) else answer
        if not request.url.path.startswith(PREFIX) or request.url.path.startswith(f"{PREFIX}static/"):
            return json_answer
        status, reason = reason_of(exc)
        page = error_page(request, status, reason)
        for name in KEPT_ERROR_HEADERS:  # what the API's answer says beside its body (416's size, 429's wait)
            if name in json_answer.headers:
                page.headers[name] = json_answer.headers[name]
        return page

    return handler


def _install_error_pages(app: FastAPI) -> None:
    """Errors under :data:`PREFIX` answer HTML; everywhere else the API's JSON handlers stay in charge."""
    reasons: dict[type[Exception], Callable[[Any], tuple[int, str]]] = {
        HubError: lambda exc: (exc.status, exc.reason),
        ValidationError: lambda exc: (400, f"{exc.field}: {exc.reason}" if exc.field else exc.reason),
        StarletteHTTPException: lambda exc: (exc.status_code, str(exc.detail)[:200]),
    }
    for kind, reason_of in reasons.items():
        app.add_exception_handler(kind, _html_under_prefix(app.exception_handlers[kind], reason_of))


def mount(app: FastAPI) -> None:
    """The web app's pages under :data:`PREFIX`, its static files, HTML error pages and security headers."""
    from oaiod.hub.web import pages

    app.include_router(pages.router, prefix=PREFIX.rstrip("/"), include_in_schema=False)
    # a person who types the hub's address gets the web app (the API and the probes keep their paths)
    app.add_api_route("/", lambda: RedirectResponse(PREFIX, status_code=307), include_in_schema=False)
    app.mount(f"{PREFIX}static", StaticFiles(directory=HERE / "static"), name="web-static")
    _install_error_pages(app)
    app.add_middleware(SecurityHeaders)
