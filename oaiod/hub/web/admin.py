"""Supervisor pages: users (add, disable, reset password, storage used), storage hosts, hub health. Only a
supervisor's session gets past :func:`supervisor`; everyone else gets the 403 page.

Disabling a user removes their password and ends their sessions (:meth:`HubService.set_password` with None): the
hub's existing "exists, cannot log in" state, so no schema change; setting a new password enables them again.
Their objects, shares and blobs stay.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from oaiod.errors import ValidationError
from oaiod.hub.browse import checked_password, masked_storage_hosts, users_with_storage
from oaiod.hub.deps import get_service
from oaiod.hub.errors import Forbidden, HubError
from oaiod.hub.service import Actor
from oaiod.hub.web.objects import HELPERS
from oaiod.hub.web.render import FormDep, WebActorDep, redirect, render
from oaiod.model import validate_username

router = APIRouter(prefix="/admin")


def supervisor(actor: WebActorDep) -> Actor:
    if not actor.is_supervisor:
        raise Forbidden("only a supervisor may open the hub's administration pages")
    return actor


SupervisorDep = Annotated[Actor, Depends(supervisor)]


@router.get("/users")
def users_page(request: Request, _actor: SupervisorDep) -> Response:
    return render(request, "admin_users.html", users=users_with_storage(request), error="", **HELPERS)


def _refused(request: Request, exc: Exception) -> Response:
    reason = f"{exc.field}: {exc.reason}" if isinstance(exc, ValidationError) else getattr(exc, "reason", str(exc))
    status = exc.status if isinstance(exc, HubError) else 400
    return render(
        request, "admin_users.html", status=status, users=users_with_storage(request), error=reason, **HELPERS
    )


@router.post("/users")
def add_user(request: Request, _actor: SupervisorDep, form: FormDep) -> Response:
    try:
        username = validate_username(form.get("username", "").strip())
        password = checked_password(form.get("password", ""))
        get_service(request).add_user(username, password, supervisor=form.get("supervisor") == "on")
    except (ValidationError, HubError) as exc:
        return _refused(request, exc)
    return redirect("admin/users", f"Added {username}.")


@router.post("/users/{username}/disable")
def disable_user(request: Request, username: str, actor: SupervisorDep, form: FormDep) -> Response:
    username = validate_username(username)
    if username == actor.username:
        return _refused(request, Forbidden("you cannot disable your own account"))
    get_service(request).set_password(username, None)
    return redirect("admin/users", f"Disabled {username}: logged out everywhere; a new password enables them again.")


@router.post("/users/{username}/password")
def reset_password(request: Request, username: str, _actor: SupervisorDep, form: FormDep) -> Response:
    try:
        username = validate_username(username)
        get_service(request).set_password(username, checked_password(form.get("password", "")))
    except (ValidationError, HubError) as exc:
        return _refused(request, exc)
    return redirect("admin/users", f"Set a new password for {username}; their sessions ended.")


@router.get("/storage")
def storage_page(request: Request, _actor: SupervisorDep) -> Response:
    content = request.app.state.blobs.content.describe()
    return render(request, "admin_storage.html", hosts=masked_storage_hosts(request), content=content)


async def health(request: Request) -> dict[str, Any]:
    """The readiness checks (``/readyz``), the version and what the hub is busy with."""
    from oaiod import __version__

    checks = await request.app.state.readiness.checks()
    return {
        "version": __version__,
        "ready": all(value == "ok" for value in checks.values()),
        "checks": checks,
        "users": len(get_service(request).list_users()),
        "waiting_polls": request.app.state.notifier.waiting(),
        "downloads_held": request.app.state.blobs.content_in_use(),
        "content_store": request.app.state.blobs.content.describe(),
    }


@router.get("/health")
async def health_page(request: Request, _actor: SupervisorDep) -> Response:
    return render(request, "admin_health.html", health=await health(request))
