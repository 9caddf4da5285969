"""Every page router of the web app, in one place: :func:`oaiod.hub.web.render.mount` includes :data:`router`.
A new page module adds its router here (one line)."""

from __future__ import annotations

from fastapi import APIRouter

from oaiod.hub.web import admin, auth, objects, sharing

router = APIRouter()  # included without a schema: pages are HTML; their API twins are in the OpenAPI document
router.include_router(auth.router)
router.include_router(objects.router)
router.include_router(sharing.router)
router.include_router(admin.router)
