"""What every route depends on: the request's context ids, CSRF check, the acting user, a JSON body, and the JSON
answers (an error is ``{"error", "reason", ...}``). Routers import these, never the application (:mod:`oaiod.hub.app`).

- :func:`context_ids` (``X-OAIO-*`` headers → 400 when malformed), :func:`csrf_check` (non-GET needs ``X-CSRFToken``
  equal to the cookie → 403), :func:`current_actor` (live session → 401; supervisors may act for another user through
  ``X-OAIO-user``), :func:`json_body` (415 / 400 for anything but plain JSON, 413 beyond :data:`MAX_JSON_VALUES`).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from oaiod import jsoncodec
from oaiod.hub.errors import BadRequest, CsrfFailed, NotAuthenticated, NotFound, TooLarge, UnsupportedMedia
from oaiod.hub.loginguard import DEVICE_COOKIE, DEVICE_TOKEN_LIFETIME
from oaiod.hub.observe import ACTOR_STATE
from oaiod.hub.service import Actor, HubService
from oaiod.model import context_decode

SESSION_COOKIE = "sessionid"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "X-CSRFToken"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: JSON values (counted as ``,`` ``[`` ``{``) a body may hold; a 100,000-file folder's values hold ~600,000
MAX_JSON_VALUES = 1_000_000


class HubJSONResponse(JSONResponse):
    """JSON in UTF-8; falls back to ASCII escapes for strings UTF-8 cannot carry (lone surrogates in values)."""

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps(content, ascii_fallback=True)


def error_response(status: int, code: str, reason: str, **extra: Any) -> HubJSONResponse:
    return HubJSONResponse({"error": code, "reason": reason, **extra}, status_code=status)


def get_service(request: Request) -> HubService:
    return cast(HubService, request.app.state.service)  # put there by create_app


def context_ids(request: Request) -> tuple[str, str, str]:
    """``(user, device, app)`` from the ``X-OAIO-*`` headers; 400 when one is malformed."""
    return context_decode(request.headers)


def csrf_check(request: Request) -> None:
    """Django-style double submit: a non-GET request sends ``X-CSRFToken`` equal to the ``csrftoken`` cookie."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not header:
        raise CsrfFailed(f"CSRF token missing: GET this URL first and send the {CSRF_COOKIE} cookie as {CSRF_HEADER}")
    if not hmac.compare_digest(cookie.encode(), header.encode()):
        raise CsrfFailed(f"the {CSRF_HEADER} header does not match the {CSRF_COOKIE} cookie")


def current_actor(
    request: Request,
    ids: Annotated[tuple[str, str, str], Depends(context_ids)],
    _csrf: Annotated[None, Depends(csrf_check)],
) -> Actor:
    """The user a request acts for; a supervisor acts for the user named in ``X-OAIO-user`` (if any)."""
    service = get_service(request)
    login = service.session_user(request.cookies.get(SESSION_COOKIE, ""))
    if login is None:
        raise NotAuthenticated("log in first (POST login/)")
    user_header, device_id, app_id = ids
    username = login.username
    if user_header and user_header != login.username and login.is_supervisor:
        if service.user(user_header) is None:
            raise NotFound(f"no user named {user_header!r} to act for")
        username = user_header
    actor = Actor(username, login.username, login.is_supervisor, device_id, app_id)
    setattr(request.state, ACTOR_STATE, actor)  # for the access log (oaiod.hub.observe)
    return actor


async def json_body(request: Request) -> Any:
    """The request body as plain JSON (no NaN/Infinity); 415 for another content type, 400 when malformed, 413
    beyond :data:`MAX_JSON_VALUES` values (counted before parsing: each costs the hub ~60-100 bytes parsed)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMedia(f"send the body as application/json, not {content_type[:60] or 'nothing'!r}")
    body = await request.body()
    if len(body) > MAX_JSON_VALUES and sum(map(body.count, (b",", b"[", b"{"))) >= MAX_JSON_VALUES:
        raise TooLarge(f"the body holds more than {MAX_JSON_VALUES} JSON values (or commas in strings)")
    try:
        return jsoncodec.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None


ActorDep = Annotated[Actor, Depends(current_actor)]
BodyDep = Annotated[Any, Depends(json_body)]


def set_session_cookies(request: Request, response: Response, service: HubService, token: str, device: str) -> None:
    """The cookies of a new login (``login/`` and the web app's login page): the session, HttpOnly and SameSite=Lax,
    ``Secure`` over HTTPS (directly or through a trusted proxy, :mod:`oaiod.hub.proxy`); and the device token that
    lets this client past the limits a guesser can fill for its user (:mod:`oaiod.hub.loginguard`). ``Path=/``
    because a proxy may serve the API under another prefix."""
    secure = request.url.scheme == "https"
    lifetime = int(service.settings.session_lifetime)
    response.set_cookie(SESSION_COOKIE, token, max_age=lifetime, httponly=True, samesite="lax", path="/", secure=secure)
    device_lifetime = int(DEVICE_TOKEN_LIFETIME)
    response.set_cookie(
        DEVICE_COOKIE, device, max_age=device_lifetime, httponly=True, samesite="lax", path="/", secure=secure
    )


def json_answer(data: Any, headers: dict[str, str] | None = None) -> Response:
    """``data`` (plain JSON types) as a response, serialised by :func:`oaiod.jsoncodec.dumps` alone.

    A returned dict would first be walked by FastAPI's ``jsonable_encoder``, element by element: for an object
    whose manifest lists 10,000 files that took ~0.25 s per answer; ``json.dumps`` takes ~0.01 s, jsoncodec ~0.002 s.
    """
    return Response(jsoncodec.dumps(data), media_type="application/json", headers=headers)
