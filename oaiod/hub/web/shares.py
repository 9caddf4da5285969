"""Pages of folder archives and share links: "Download as zip" (prepare, a status page the browser reloads by the
``Refresh`` header — no script — then the download) and an object's links page (make, list, revoke).

Every action is :class:`~oaiod.hub.archives.Archives` or :class:`~oaiod.hub.links.Links`, the API routes' own
services, so a page allows exactly what ``hub/archives/`` and ``hub/links/`` allow. Included by
:func:`oaiod.hub.shareroutes.mount` under the web app's prefix (same security headers and HTML error pages).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from oaiod.errors import ValidationError
from oaiod.hub.archives import PREPARING, Holder
from oaiod.hub.errors import Forbidden, HubError
from oaiod.hub.service import Actor
from oaiod.hub.shareroutes import api_base, disposition, get_archives, get_links
from oaiod.hub.web.objects import HELPERS, catalog, object_url, when
from oaiod.hub.web.render import FormDep, WebActorDep, redirect, render
from oaiod.model import validate_file_path, validate_oaio_id, validate_stamp

router = APIRouter()
REFRESH = 2  #: seconds between two reloads of a status page while the archive is prepared
LIFETIMES = (("1 day", 86400), ("7 days", 7 * 86400), ("30 days", 30 * 86400))


def _path(value: str) -> str:
    return validate_file_path(value, "path") if value else ""


# -- "Download as zip" --------------------------------------------------------------------------------------------


@router.post("/o/{oaio_id}/archive")
def prepare_archive(request: Request, oaio_id: str, actor: WebActorDep, form: FormDep) -> Response:
    """Ask for the zip of a folder (``path``, ``stamp`` from the form); then its status page."""
    stamp = form.get("stamp", "")
    status = get_archives(request).prepare(
        Holder(actor.username),
        validate_oaio_id(oaio_id),
        validate_stamp(stamp, "stamp") if stamp else "",
        _path(form.get("path", "")),
    )
    return redirect(f"archive/{status['id']}")


@router.get("/archive/{archive_id}")
def archive_page(request: Request, archive_id: str, actor: WebActorDep) -> Response:
    """The archive's status; reloaded every :data:`REFRESH` seconds while it is prepared."""
    status = get_archives(request).status(Holder(actor.username), archive_id)
    summary = catalog(request).summary(actor, status["oaio_id"])
    page = render(request, "archive.html", archive=status, summary=summary, percent=int(status["progress"] * 100),
                  **HELPERS)  # fmt: skip
    if status["status"] == PREPARING:
        page.headers["Refresh"] = str(REFRESH)
    return page


@router.get("/archive/{archive_id}/download")
def download_archive(request: Request, archive_id: str, actor: WebActorDep) -> Response:
    path, name = get_archives(request).open(Holder(actor.username), archive_id)
    return FileResponse(path, media_type="application/zip", headers={"Content-Disposition": disposition(name)})


# -- links --------------------------------------------------------------------------------------------------------


def _links_page(request: Request, actor: Actor, oaio_id: str, *, error: str = "", status: int = 200) -> Response:
    summary = catalog(request).summary(actor, oaio_id)  # 404 page for a non-subscriber
    links = get_links(request)
    try:
        rows: list[dict[str, Any]] | None = links.listing(actor, oaio_id)
    except Forbidden:
        rows = None  # may read, may not share: the page says so
    base = api_base(request, links)
    path = request.query_params.get("path", "")
    return render(request, "links.html", status=status, summary=summary, links=rows, base=base, error=error,
                  lifetimes=LIFETIMES, path=path, **HELPERS)  # fmt: skip


@router.get("/o/{oaio_id}/links")
def links_page(request: Request, oaio_id: str, actor: WebActorDep) -> Response:
    return _links_page(request, actor, validate_oaio_id(oaio_id))


@router.post("/o/{oaio_id}/links")
def make_link(request: Request, oaio_id: str, actor: WebActorDep, form: FormDep) -> Response:
    """Make a link (``path``, ``expires_in``, optional ``password``, ``pin`` for this version); a refusal shows the
    page again with the hub's reason and status."""
    oaio_id = validate_oaio_id(oaio_id)
    try:
        lifetime = int(form.get("expires_in", "") or 7 * 86400)
        pinned = validate_stamp(form["pin"], "pin") if form.get("pin") else ""
        link = get_links(request).create(
            actor, oaio_id, _path(form.get("path", "").strip("/")), pinned, lifetime, form.get("password") or None
        )
    except ValueError:
        return _links_page(request, actor, oaio_id, error="expires_in: not a number of seconds", status=400)
    except ValidationError as exc:
        return _links_page(request, actor, oaio_id, error=f"{exc.field}: {exc.reason}", status=400)
    except HubError as exc:
        return _links_page(request, actor, oaio_id, error=exc.reason, status=exc.status)
    what = link["path"] or "the whole object"
    return redirect(object_url(oaio_id, "links"), f"Link to {what} made; it works until {when(link['expires'])}.")


@router.post("/o/{oaio_id}/links/revoke")
def revoke_link(request: Request, oaio_id: str, actor: WebActorDep, form: FormDep) -> Response:
    oaio_id = validate_oaio_id(oaio_id)
    get_links(request).revoke(actor, form.get("link_id", ""))
    return redirect(object_url(oaio_id, "links"), "Link revoked: it no longer works.")
