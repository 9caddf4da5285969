"""The sharing page of an object: who holds which right, add a user with a right, change or remove one. Every change
is :meth:`HubService.subscribe` — the ``subscribe/`` route's rules, checked there and only there."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from oaiod.errors import ValidationError
from oaiod.hub.catalog import RIGHT_NAMES, RIGHT_WORDS
from oaiod.hub.deps import get_service
from oaiod.hub.errors import HubError
from oaiod.hub.service import Actor
from oaiod.hub.web.objects import HELPERS, catalog, object_url
from oaiod.hub.web.render import FormDep, WebActorDep, redirect, render
from oaiod.model import (
    DELETE_ACCESS_RIGHT,
    NO_ACCESS_RIGHT,
    RIGHTS_ORDER,
    right_grants,
    validate_access_right,
    validate_oaio_id,
    validate_username,
)

router = APIRouter()
GRANTABLE = ("r", "U", "D")  #: nobody is granted C (only the creator holds it)


def _page(request: Request, actor: Actor, oaio_id: str, *, error: str = "", status: int = 200) -> Response:
    summary = catalog(request).summary(actor, oaio_id)
    holders = [
        row for row in get_service(request).user_rights(actor, oaio_id) if row["access_right"] != NO_ACCESS_RIGHT
    ]
    holders.sort(key=lambda row: (-RIGHTS_ORDER.index(row["access_right"]), row["username"]))
    may_share = right_grants(summary.right, DELETE_ACCESS_RIGHT)
    offered = [right for right in GRANTABLE if right_grants(summary.right, right)] if may_share else []
    return render(request, "sharing.html", status=status, summary=summary, holders=holders, may_share=may_share,
                  offered=offered, error=error, rights_in_order=[r for r in reversed(RIGHTS_ORDER) if r != "x"],
                  **HELPERS)  # fmt: skip


@router.get("/o/{oaio_id}/sharing")
def sharing_page(request: Request, oaio_id: str, actor: WebActorDep) -> Response:
    return _page(request, actor, validate_oaio_id(oaio_id))


@router.post("/o/{oaio_id}/sharing")
def share(request: Request, oaio_id: str, actor: WebActorDep, form: FormDep) -> Response:
    """Grant ``right`` to ``username`` (``x``: remove their subscription); a refusal shows the page again with the
    hub's reason and status."""
    oaio_id = validate_oaio_id(oaio_id)
    catalog(request).summary(actor, oaio_id)  # a non-subscriber gets the 404 page, not the form
    try:
        username = validate_username(form.get("username", "").strip())
        right = validate_access_right(form.get("right", ""), "right")
        get_service(request).subscribe(actor, oaio_id, username, right)
    except ValidationError as exc:
        return _page(request, actor, oaio_id, error=f"{exc.field}: {exc.reason}", status=400)
    except HubError as exc:
        return _page(request, actor, oaio_id, error=exc.reason, status=exc.status)
    if right == NO_ACCESS_RIGHT:
        message = f"{username} no longer has access." if username != actor.username else "You left this object."
        target = object_url(oaio_id, "sharing") if username != actor.username else "objects"
        return redirect(target, message)
    return redirect(object_url(oaio_id, "sharing"), f"{username} is now {RIGHT_NAMES[right]}: {RIGHT_WORDS[right]}.")
