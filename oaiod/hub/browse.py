"""The API twins of the web app's pages (``/api/hub/…``, ``docs/hub-api.md`` *Web app*): what a person does in the
browser, a script does here, with the same session, CSRF header and rights. The rules are in
:mod:`oaiod.hub.catalog` (objects, trees, versions, restore) and :class:`~oaiod.hub.service.HubService`
(accounts); the supervisor routes refuse everyone else with 403.

Sharing, downloads and health need no twin: ``subscribe/`` and ``user_subz/``, ``hub/blobs/download/`` (``Range``
honoured) and ``/readyz`` are what the pages call.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request

from oaiod.errors import ValidationError
from oaiod.hub.accounts import looks_secret
from oaiod.hub.blobstore import BlobStore
from oaiod.hub.catalog import Catalog
from oaiod.hub.deps import ActorDep, BodyDep, get_service
from oaiod.hub.errors import Forbidden
from oaiod.hub.service import Actor
from oaiod.model import validate_exact_keys, validate_file_path, validate_oaio_id, validate_stamp, validate_username

router = APIRouter(prefix="/hub")
MIN_PASSWORD = 8  #: characters of a password set through these routes


def _catalog(request: Request) -> Catalog:
    return Catalog(get_service(request), cast(BlobStore, request.app.state.blobs))


def _supervisor(actor: Actor) -> None:
    if not actor.is_supervisor:
        raise Forbidden("only a supervisor may manage users and see the hub's storage hosts and health")


def checked_password(value: Any) -> str:
    """A password a supervisor sets (here or on the web app's users page)."""
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise ValidationError("password", f"must be a string of at least {MIN_PASSWORD} characters")
    return value


@router.get("/objects/")
def objects(request: Request, actor: ActorDep) -> dict[str, Any]:
    """The objects the caller may read with name, kind, owner, right, newest stamp, author, device, files, size."""
    return {"objects": [item.as_dict() for item in _catalog(request).objects(actor)]}


@router.get("/tree/{oaio_id}")
def tree(request: Request, oaio_id: str, actor: ActorDep, path: str = "", stamp: str = "") -> dict[str, Any]:
    """The entries of folder ``path`` of a version (the newest unless ``stamp``): sub-folders, then files."""
    oaio_id = validate_oaio_id(oaio_id)
    path = validate_file_path(path.strip("/"), "path") if path.strip("/") else ""
    chosen = validate_stamp(stamp, "stamp") if stamp else None
    return _catalog(request).listing(actor, oaio_id, chosen, path).as_dict()


@router.get("/file-versions/{oaio_id}")
def file_versions(request: Request, oaio_id: str, actor: ActorDep, path: str) -> list[dict[str, Any]]:
    """Every kept version holding file ``path``, newest first, with its size and sha256 on the hub."""
    return _catalog(request).file_versions(actor, validate_oaio_id(oaio_id), validate_file_path(path, "path"))


@router.post("/restore/")
def restore(request: Request, actor: ActorDep, body: BodyDep) -> dict[str, str]:
    """``{oaio_id, stamp, path?}``: version ``stamp`` (or only its file ``path``) becomes the newest; needs ``U``."""
    validate_exact_keys(body, ("oaio_id", "stamp"), "body", optional=("path",))
    path = validate_file_path(body["path"], "path") if body.get("path") else ""
    oaio_id = validate_oaio_id(body["oaio_id"])
    return {"stamp": _catalog(request).restore(actor, oaio_id, validate_stamp(body["stamp"], "stamp"), path)}


@router.get("/users/")
def users(request: Request, actor: ActorDep) -> list[dict[str, Any]]:
    """Every user with role, whether they can log in, creation stamp and ``storage_used`` bytes (supervisor)."""
    _supervisor(actor)
    return users_with_storage(request)


def users_with_storage(request: Request) -> list[dict[str, Any]]:
    """Every user (``list_users``) with ``storage_used`` bytes (:meth:`Catalog.storage_used`)."""
    used = _catalog(request).storage_used()
    return [{**row, "storage_used": used.get(row["username"], 0)} for row in get_service(request).list_users()]


@router.post("/users/")
def add_user(request: Request, actor: ActorDep, body: BodyDep) -> dict[str, str]:
    """``{username, password, is_supervisor?}``: a new account (supervisor; 409 when the name is taken)."""
    _supervisor(actor)
    validate_exact_keys(body, ("username", "password"), "body", optional=("is_supervisor",))
    username = validate_username(body["username"])
    supervisor = body.get("is_supervisor", False)
    if not isinstance(supervisor, bool):
        raise ValidationError("is_supervisor", "must be true or false")
    get_service(request).add_user(username, checked_password(body["password"]), supervisor=supervisor)
    return {"detail": f"added {username}"}


@router.post("/users/password/")
def set_password(request: Request, actor: ActorDep, body: BodyDep) -> dict[str, str]:
    """``{username, password}``: a new password (``null``: disable the account); ends the user's sessions."""
    _supervisor(actor)
    validate_exact_keys(body, ("username", "password"), "body")
    username = validate_username(body["username"])
    if body["password"] is None and username == actor.login:
        raise Forbidden("you cannot disable your own account")
    password = None if body["password"] is None else checked_password(body["password"])
    get_service(request).set_password(username, password)
    return {"detail": f"{'disabled' if password is None else 'set the password of'} {username}"}


@router.get("/storage-hosts/")
def storage_hosts(request: Request, actor: ActorDep) -> list[dict[str, Any]]:
    """The registered cloud storage hosts, secret-looking arguments masked (supervisor)."""
    _supervisor(actor)
    return masked_storage_hosts(request)


def masked_storage_hosts(request: Request) -> list[dict[str, Any]]:
    """The registered storage hosts with their arguments, secret-looking values masked."""
    return [
        {"csh_id": csh_id, "args": {key: "••••••" if looks_secret(key) else value for key, value in args.items()}}
        for csh_id, args in get_service(request).list_storage()
    ]
