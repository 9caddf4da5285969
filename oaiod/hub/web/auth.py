"""Log in and log out: the hub's session cookie, set and ended exactly as ``login/`` and ``logout/`` do."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from oaiod.errors import ValidationError
from oaiod.hub.deps import SESSION_COOKIE, get_service, set_session_cookies
from oaiod.hub.errors import NotAuthenticated, RateLimited
from oaiod.hub.loginguard import DEVICE_COOKIE
from oaiod.hub.web.render import FormDep, redirect, render, url
from oaiod.model import validate_username

router = APIRouter()


def _safe_next(value: str) -> str:
    """Where to go after logging in: a path of the web app only (never another site: ``//evil`` or ``/\\evil``)."""
    if value.startswith(url()) and not value.startswith(("//", "/\\")) and "\\" not in value:
        return value
    return url("objects")


@router.get("/")
def index(request: Request) -> Response:
    """The start: the user's objects, or the login page."""
    logged_in = get_service(request).session_user(request.cookies.get(SESSION_COOKIE, "")) is not None
    return RedirectResponse(url("objects" if logged_in else "login"), status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "") -> Response:
    return render(request, "login.html", next=_safe_next(next), username="", error="")


@router.post("/login")
def login(request: Request, form: FormDep) -> Response:
    username, password, target = form.get("username", ""), form.get("password", ""), _safe_next(form.get("next", ""))
    service = get_service(request)
    address = request.client.host if request.client else "?"
    try:
        try:
            validate_username(username)
        except ValidationError:
            raise NotAuthenticated("wrong username or password") from None
        token, _user, device = service.login(username, password, address, request.cookies.get(DEVICE_COOKIE, ""))
    except (NotAuthenticated, RateLimited) as exc:
        status = 429 if isinstance(exc, RateLimited) else 401
        return render(request, "login.html", status=status, next=target, username=username, error=exc.reason)
    response = RedirectResponse(target, status_code=303)
    set_session_cookies(request, response, service, token, device)
    return response


@router.post("/logout")
def logout(request: Request, _form: FormDep) -> Response:
    get_service(request).logout(request.cookies.get(SESSION_COOKIE, ""))
    response = redirect("login", "You are logged out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
