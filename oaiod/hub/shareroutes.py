"""Routes of folder archives (``hub/archives/…``), share links (``hub/links/…``) and the links' public download
(``hub/share/<id>``); the rules are in :mod:`oaiod.hub.archives` and :mod:`oaiod.hub.links`.

Archives and link management need a session and CSRF like every hub route; ``hub/share/<id>`` needs neither (its
URL's signature is the credential, a password comes in a form POST or a header) and answers JSON errors: 404 for
an unknown, forged or dead link, 410 for an expired or revoked one. A browser (``Accept: text/html``) gets the web
app's pages instead where a person has something to do: the password form, the page that waits for a zip.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, cast
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from oaiod.errors import ValidationError
from oaiod.hub.archives import NOT_PREPARED, PREPARED, Archives, Holder
from oaiod.hub.blobs import blob_download, get_store
from oaiod.hub.deps import ActorDep, BodyDep, HubJSONResponse
from oaiod.hub.errors import BadRequest, Forbidden, NotAuthenticated
from oaiod.hub.links import COOKIE, DEFAULT_LIFETIME, PASSWORD_HEADER, Grant, Links
from oaiod.hub.service import Actor
from oaiod.model import validate_exact_keys, validate_file_path, validate_oaio_id, validate_stamp

log = logging.getLogger("oaiod.hub.share")

router = APIRouter(prefix="/hub")
FEATURE = "links"
MAX_FORM = 4096  #: bytes of a password form
REFRESH = 2  #: seconds a browser waits before asking again for a zip being prepared


def get_archives(request: Request) -> Archives:
    return cast(Archives, request.app.state.archives)


def get_links(request: Request) -> Links:
    return cast(Links, request.app.state.links)


ArchivesDep = Annotated[Archives, Depends(get_archives)]
LinksDep = Annotated[Links, Depends(get_links)]


def _path(value: Any, fld: str = "path") -> str:
    """A file or folder inside an object (``""``: the whole object)."""
    if value is None or value == "":
        return ""
    try:
        return validate_file_path(value, fld)
    except ValueError as exc:
        raise ValidationError(fld, str(exc)) from None


def _stamp(value: Any) -> str:
    return "" if value is None or value == "" else validate_stamp(value, "stamp")


def api_base(request: Request, links: Links) -> str:
    return links.service.settings.public_url or f"{request.base_url}api/"


def disposition(name: str) -> str:
    ascii_name = "".join(char if char.isascii() and char.isprintable() and char not in '"\\' else "_" for char in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


# -- archives ---------------------------------------------------------------------------------------------------


@router.post("/archives/")
def prepare_archive(actor: ActorDep, archives: ArchivesDep, body: BodyDep) -> Response:
    """Prepare the zip of a folder: ``{oaio_id, path?, stamp?}`` → its status (202 while preparing, 200 prepared)."""
    validate_exact_keys(body, ("oaio_id",), "body", optional=("path", "stamp"))
    status = archives.prepare(
        Holder(actor.username), validate_oaio_id(body["oaio_id"]), _stamp(body.get("stamp")), _path(body.get("path"))
    )
    return HubJSONResponse(status, status_code=200 if status["status"] == PREPARED else 202)


@router.get("/archives/")
def find_archive(
    actor: ActorDep, archives: ArchivesDep, oaio_id: str, path: str = "", stamp: str = ""
) -> dict[str, Any]:
    """The status of the archive of a folder and version (``not prepared`` when none is kept)."""
    return archives.find(Holder(actor.username), validate_oaio_id(oaio_id), _stamp(stamp), _path(path))


@router.get("/archives/{archive_id}")
def archive_status(archive_id: str, actor: ActorDep, archives: ArchivesDep) -> dict[str, Any]:
    return archives.status(Holder(actor.username), archive_id)


@router.get("/archives/{archive_id}/download")
def download_archive(archive_id: str, actor: ActorDep, archives: ArchivesDep) -> Response:
    """The prepared zip (``Range`` honoured); 409 while it is prepared."""
    path, name = archives.open(Holder(actor.username), archive_id)
    return FileResponse(path, media_type="application/zip", headers={"Content-Disposition": disposition(name)})


@router.delete("/archives/{archive_id}")
def drop_archive(archive_id: str, actor: ActorDep, archives: ArchivesDep) -> dict[str, Any]:
    return {"deleted": archives.drop(Holder(actor.username), archive_id)}


# -- links ------------------------------------------------------------------------------------------------------


@router.post("/links/")
def create_link(request: Request, actor: ActorDep, links: LinksDep, body: BodyDep) -> dict[str, Any]:
    """A new link: ``{oaio_id, path?, stamp?, expires_in?, password?}`` → the link with its ``url``."""
    validate_exact_keys(body, ("oaio_id",), "body", optional=("path", "stamp", "expires_in", "password"))
    lifetime = body.get("expires_in", DEFAULT_LIFETIME)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool):
        raise ValidationError("expires_in", "must be a whole number of seconds")
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        raise ValidationError("password", "must be a string")
    link = links.create(
        actor, validate_oaio_id(body["oaio_id"]), _path(body.get("path")), _stamp(body.get("stamp")), lifetime, password
    )
    return {**link, "url": api_base(request, links) + link["url"]}


@router.get("/links/")
def list_links(request: Request, oaio_id: str, actor: ActorDep, links: LinksDep) -> list[dict[str, Any]]:
    base = api_base(request, links)
    return [{**link, "url": base + link["url"]} for link in links.listing(actor, validate_oaio_id(oaio_id))]


@router.delete("/links/{link_id}")
def revoke_link(request: Request, link_id: str, actor: ActorDep, links: LinksDep) -> dict[str, Any]:
    link = links.revoke(actor, link_id)
    return {**link, "url": api_base(request, links) + link["url"]}


# -- the public download of a link -------------------------------------------------------------------------------


@router.get("/share/{link_id}")
def use_link(request: Request, link_id: str, expires: str = "", bewit: str = "") -> Response:
    """A link's file, or its folder's zip (202 with the progress until it is prepared). No session: the URL's
    signature is the credential; a password comes in the header ``X-Oaiod-Link-Password`` (or a password cookie
    that the form POST set)."""
    return _serve_link(request, link_id, expires, bewit, request.headers.get(PASSWORD_HEADER))


@router.post("/share/{link_id}")
async def use_link_with_password(request: Request, link_id: str, expires: str = "", bewit: str = "") -> Response:
    """As GET, with the password as the form field ``password`` (a browser's form); a right one sets the cookie."""
    password = await _form_password(request)
    return await run_in_threadpool(_serve_link, request, link_id, expires, bewit, password)


async def _form_password(request: Request) -> str | None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest("send the password as a form (application/x-www-form-urlencoded) or in a header")
    body = await request.body()
    if len(body) > MAX_FORM:
        raise BadRequest(f"the form is longer than {MAX_FORM} bytes")
    try:
        values = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None
    return values.get("password", [None])[0]


def _serve_link(request: Request, link_id: str, expires: str, bewit: str, password: str | None) -> Response:
    links, archives = get_links(request), get_archives(request)
    grant = links.open(link_id, expires, bewit)
    try:
        links.check_password(grant, password, request.cookies.get(COOKIE, ""))
    except (NotAuthenticated, Forbidden) as exc:
        if not _wants_html(request):
            raise
        action = f"{request.url.path}?{request.url.query}"
        answer = _page(request, "link_password.html", exc.status, action=action, wrong=isinstance(exc, Forbidden))
    else:
        answer = _folder(request, archives, grant) if grant.selection.is_folder else _file(request, grant)
    if password is not None and request.method == "POST" and grant.has_password:
        answer.set_cookie(COOKIE, links.pass_cookie(grant), max_age=3600, httponly=True, samesite="lax",
                          path=f"/api/hub/share/{link_id}", secure=request.url.scheme == "https")  # fmt: skip
    answer.headers["Cache-Control"] = "no-store"
    answer.headers["Referrer-Policy"] = "no-referrer"  # the URL is the credential
    return answer


def _file(request: Request, grant: Grant) -> Response:
    selection = grant.selection
    name = f"{selection.oaio_id}/{selection.stamp}/{selection.files[0].path}"
    actor = Actor(grant.creator, grant.creator, False)  # read with the creator's right, as the link grants
    headers = {"Content-Disposition": disposition(selection.top)}
    return blob_download(request, get_store(request), actor, name, **headers)


def _folder(request: Request, archives: Archives, grant: Grant) -> Response:
    selection = grant.selection
    holder = Holder(grant.creator, grant.link_id)
    status = archives.find(holder, selection.oaio_id, selection.stamp, selection.path)  # a poll reads only
    if status["status"] == NOT_PREPARED:
        status = archives.prepare(holder, selection.oaio_id, selection.stamp, selection.path)
    if status["status"] == PREPARED:
        path, name = archives.open(holder, status["id"])
        return FileResponse(path, media_type="application/zip", headers={"Content-Disposition": disposition(name)})
    public = {key: status[key] for key in ("status", "progress", "done", "total")}
    waiting = {"Retry-After": str(REFRESH), "Refresh": str(REFRESH)}
    if _wants_html(request):
        page = _page(request, "link_wait.html", 202, name=selection.top, percent=int(status["progress"] * 100))
        page.headers.update(waiting)
        return page
    return HubJSONResponse(public, status_code=202, headers=waiting)


def _wants_html(request: Request) -> bool:
    """A browser (it accepts HTML): it gets a page with a password form, or one that reloads while a zip is made."""
    return "text/html" in request.headers.get("accept", "")


def _page(request: Request, template: str, status: int, **context: Any) -> Response:
    """A page of the web app, with its security headers (this route is not under its prefix)."""
    from oaiod.hub.web.render import SECURITY_HEADERS, render

    page = render(request, template, status=status, **context)
    page.headers.update({**SECURITY_HEADERS, "Referrer-Policy": "no-referrer"})
    return page


def mount(app: Any) -> None:
    """Add archives and share links to a hub application (after the blob store, whose files they serve)."""
    app.state.archives = Archives(app.state.service, app.state.blobs)
    app.state.archives.sweep(force=True)
    app.state.links = Links(app.state.service)
    app.include_router(router, prefix="/api")
    from oaiod.hub.web import shares
    from oaiod.hub.web.render import PREFIX

    app.include_router(shares.router, prefix=PREFIX.rstrip("/"), include_in_schema=False)  # the pages of both
    app.state.features.extend(("archives", FEATURE))
