"""Part A routes: what the published ``ae-oaio-client`` 0.3.19 calls, exactly as ``oaio-api.md`` states.

Every POST route also answers a GET with 2xx JSON (the client fetches its CSRF cookie that way, before login
too). Input is validated here with :mod:`oaiod.model` before the service sees it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from oaiod.errors import ValidationError
from oaiod.hub.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    ActorDep,
    BodyDep,
    context_ids,
    csrf_check,
    get_service,
    json_answer,
    set_session_cookies,
)
from oaiod.hub.errors import NotFound
from oaiod.hub.loginguard import DEVICE_COOKIE
from oaiod.hub.service import HubService
from oaiod.model import (
    OBJECT_KEYS,
    OaiObject,
    validate_access_right,
    validate_exact_keys,
    validate_name,
    validate_oaio_id,
    validate_object_dict,
    validate_stamp,
    validate_username,
)

LEAN_HEADER = "X-Oaiod-Lean"  #: ``1``: leave ``server_values`` out of the answer (empty), see :func:`_lean`

router = APIRouter()

HUB_CSH_ID = "Hub"  #: the csh id of the hub's own blob store
POST_ROUTES = ("login/", "logout/", "register/", "upload/", "delete/", "subscribe/", "wipe_user/")


def _csrf_hint() -> dict[str, str]:
    return {"detail": f"send a POST here; this GET only hands out the {CSRF_COOKIE} cookie"}


for _path in POST_ROUTES:
    router.add_api_route(f"/{_path}", _csrf_hint, methods=["GET"], include_in_schema=False)


def _object(data: Any) -> OaiObject:
    """The object of a register or upload request.

    The hub never reads a request's ``server_values``: register stores ``{}``, upload moves the stored newest
    version's values there (see :class:`HubService`). So they are only checked to be a JSON object within the
    size limit; everything stored or returned is validated in full.
    """
    return validate_object_dict(data, server_values_ignored=True)


# -- session ------------------------------------------------------------------------------------------------------


def _password(value: Any) -> str:
    """A password as text UTF-8 can carry (JSON may hold lone surrogates, which no hash function takes)."""
    if not isinstance(value, str):
        raise ValidationError("password", f"must be a string, not {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError("password", "holds a lone surrogate, which is not text") from None
    return value


@router.post("/login/", dependencies=[Depends(context_ids), Depends(csrf_check)])
def login(request: Request, response: Response, body: BodyDep) -> dict[str, Any]:
    """Start a session: JSON ``{"username", "password"}`` → session cookie."""
    validate_exact_keys(body, ("username", "password"), "body")
    username = validate_username(body["username"])  # a name no account can have is 400, never a database error
    password = _password(body["password"])
    service: HubService = get_service(request)
    address = request.client.host if request.client else "?"
    token, user, device = service.login(username, password, address, request.cookies.get(DEVICE_COOKIE, ""))
    set_session_cookies(request, response, service, token, device)
    return {"username": user.username, "is_supervisor": user.is_supervisor}


@router.post("/logout/", dependencies=[Depends(context_ids), Depends(csrf_check)])
def logout(request: Request, response: Response) -> dict[str, Any]:
    """End the session (fine without one)."""
    get_service(request).logout(request.cookies.get(SESSION_COOKIE, ""))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"detail": "logged out"}


@router.get("/current_stamp/")
def current_stamp(request: Request, _actor: ActorDep) -> dict[str, str]:
    return {"current_stamp": get_service(request).current_stamp()}


@router.get("/csh_args/{csh_id}")
def csh_args(request: Request, csh_id: str, _actor: ActorDep) -> dict[str, Any]:
    """Keyword arguments of the storage host class registered as ``csh_id``.

    ``Hub`` (the hub's own blob store) is offered without configuration: ``{"url": BASE}`` with the hub's public
    URL or, when none is set, the base URL the client reached; a client reuses its own hub session there.
    """
    service = get_service(request)
    csh_id = validate_name(csh_id, "csh_id")
    try:
        return service.storage_args(csh_id)
    except NotFound:
        if csh_id != HUB_CSH_ID:
            raise
    return {"url": service.settings.public_url or f"{request.base_url}api/"}


# -- objects ------------------------------------------------------------------------------------------------------


def _lean(request: Request) -> bool:
    """Whether the client asked for answers without ``server_values`` (part B, feature ``lean``): an oaiod
    device never reads them, and for a folder they are a second copy of its manifest."""
    return request.headers.get(LEAN_HEADER) == "1"


@router.post("/register/")
def register(request: Request, actor: ActorDep, body: BodyDep) -> Any:
    return json_answer(get_service(request).register(actor, _object(body), _lean(request)))


@router.post("/upload/")
def upload(request: Request, actor: ActorDep, body: BodyDep) -> Any:
    return json_answer(get_service(request).upload(actor, _object(body), _lean(request)))


@router.post("/delete/")
def delete(request: Request, actor: ActorDep, body: BodyDep) -> Any:
    """Only ``oaio_id`` is read; other object keys may come along (the client posts the whole object)."""
    validate_exact_keys(body, ("oaio_id",), "body", optional=OBJECT_KEYS)
    oaio_id = validate_oaio_id(body["oaio_id"])
    get_service(request).delete(actor, oaio_id)
    return {"detail": f"deleted {oaio_id}"}


@router.get("/oaio_stampz/")
def oaio_stampz(request: Request, actor: ActorDep, since: str | None = None) -> Any:
    """Objects the caller may read, by ``client_stamp``; with ``since`` only those changed after it (part B)."""
    since_stamp = validate_stamp(since, "since") if since is not None else ""
    cursor, items, deleted = get_service(request).list_objects(actor, since_stamp, _lean(request))
    return json_answer(items, {"X-Oaiod-Sync-Stamp": cursor, "X-Oaiod-Deleted-Count": str(deleted)})


# -- subscriptions and users ------------------------------------------------------------------------------------


@router.post("/subscribe/")
def subscribe(request: Request, actor: ActorDep, body: BodyDep) -> Any:
    validate_exact_keys(body, ("oaio_id", "username", "access_right"), "body")
    pid = get_service(request).subscribe(
        actor,
        validate_oaio_id(body["oaio_id"]),
        validate_username(body["username"]),
        validate_access_right(body["access_right"]),
    )
    return {"Pid": pid}


@router.get("/user_subz/{oaio_id}")
def user_subz(request: Request, oaio_id: str, actor: ActorDep) -> Any:
    return get_service(request).user_rights(actor, validate_oaio_id(oaio_id))


@router.post("/wipe_user/")
def wipe_user(request: Request, actor: ActorDep, body: BodyDep) -> Any:
    validate_exact_keys(body, ("Uid",), "body")
    username = validate_username(body["Uid"], "Uid")
    get_service(request).wipe_user(actor, username)
    return {"detail": f"wiped {username}"}
