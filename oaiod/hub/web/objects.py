"""Pages of a user's objects: the list, one object (its folder tree or its values, and its versions), one file's
versions, a file's download (streamed, ``Range`` honoured) and restoring a version. Every read and change goes
through :class:`~oaiod.hub.catalog.Catalog`, i.e. the hub service's and the blob store's rights."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from oaiod.hub.blobs import blob_download
from oaiod.hub.blobstore import BlobStore
from oaiod.hub.catalog import KIND_DATA, KIND_WORDS, RIGHT_NAMES, RIGHT_WORDS, Catalog
from oaiod.hub.deps import get_service
from oaiod.hub.web.render import FormDep, WebActorDep, redirect, render
from oaiod.model import (
    UPDATE_ACCESS_RIGHT,
    right_grants,
    stamp_to_datetime,
    validate_file_path,
    validate_oaio_id,
    validate_stamp,
)

router = APIRouter()


def catalog(request: Request) -> Catalog:
    return Catalog(get_service(request), cast(BlobStore, request.app.state.blobs))


def object_url(oaio_id: str, view: str = "", **params: str) -> str:
    """``o/<id>[/view][?params]`` (relative to the web app's prefix), every part quoted."""
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items() if value)
    return f"o/{quote(oaio_id, safe='')}" + (f"/{view}" if view else "") + (f"?{query}" if query else "")


def when(stamp: str) -> str:
    """A stamp as a person reads it (UTC, to the second)."""
    try:
        return stamp_to_datetime(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return stamp


def when_ns(mtime_ns: int) -> str:
    """A file's modification time (nanoseconds since the epoch) as a person reads it."""
    return _dt.datetime.fromtimestamp(mtime_ns / 1e9, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def human_size(size: int | None) -> str:
    if size is None:
        return "–"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return plural(size, "byte") if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


HELPERS: dict[str, Any] = {
    "object_url": object_url,
    "when": when,
    "when_ns": when_ns,
    "human_size": human_size,
    "plural": plural,
    "kind_words": KIND_WORDS,
    "right_names": RIGHT_NAMES,
    "right_words": RIGHT_WORDS,
}


@router.get("/objects")
def objects_page(request: Request, actor: WebActorDep) -> Response:
    return render(request, "objects.html", objects=catalog(request).objects(actor), **HELPERS)


@router.get("/o/{oaio_id}")
def object_page(request: Request, oaio_id: str, actor: WebActorDep, path: str = "", stamp: str = "") -> Response:
    """An object: its folder tree at ``path`` (files) or its values (data), in version ``stamp`` (default newest),
    and the versions the hub keeps."""
    oaio_id = validate_oaio_id(oaio_id)
    chosen = validate_stamp(stamp, "stamp") if stamp else None
    found = catalog(request)
    summary, newest_values = found.opened(actor, oaio_id)
    versions = found.version_list(actor, oaio_id)
    context: dict[str, Any] = {"summary": summary, "versions": versions, "stamp": chosen or summary.stamp}
    if summary.kind == KIND_DATA:
        version_stamp, values = (
            (summary.stamp, newest_values) if chosen in (None, summary.stamp) else found.values(actor, oaio_id, chosen)
        )
        context |= {"values_text": json.dumps(values, indent=2, ensure_ascii=False, sort_keys=True)}
        context |= {"stamp": version_stamp, "listing": None, "path": ""}
    else:
        path = validate_file_path(path.strip("/"), "path") if path.strip("/") else ""
        listing = found.listing(actor, oaio_id, chosen, path, opened=(summary, newest_values))
        context |= {"listing": listing, "path": listing.path, "values_text": ""}
    may_write = right_grants(summary.right, UPDATE_ACCESS_RIGHT)
    return render(request, "object.html", newest=chosen is None or chosen == summary.stamp, may_write=may_write,
                  crumbs=_crumbs(context["path"]), **context, **HELPERS)  # fmt: skip


def _crumbs(path: str) -> list[tuple[str, str]]:
    """``(name, path)`` of each folder from the top down to ``path``."""
    parts = path.split("/") if path else []
    return [(part, "/".join(parts[: index + 1])) for index, part in enumerate(parts)]


@router.get("/o/{oaio_id}/file")
def file_page(request: Request, oaio_id: str, actor: WebActorDep, path: str) -> Response:
    """One file: every version of the object that holds it, each downloadable and restorable."""
    oaio_id, path = validate_oaio_id(oaio_id), validate_file_path(path, "path")
    found = catalog(request)
    summary = found.summary(actor, oaio_id)
    versions = found.file_versions(actor, oaio_id, path)
    may_write = right_grants(summary.right, UPDATE_ACCESS_RIGHT)
    folder = path.rpartition("/")[0]
    return render(request, "file.html", summary=summary, path=path, versions=versions, may_write=may_write,
                  folder=folder, crumbs=_crumbs(folder), **HELPERS)  # fmt: skip


@router.get("/o/{oaio_id}/download")
def download(request: Request, oaio_id: str, actor: WebActorDep, path: str, stamp: str = "") -> Response:
    """A file's bytes (the newest version unless ``stamp``), as an attachment: never shown inline on this origin."""
    oaio_id, path = validate_oaio_id(oaio_id), validate_file_path(path, "path")
    found = catalog(request)
    version_stamp = validate_stamp(stamp, "stamp") if stamp else found.newest_stamp(actor, oaio_id)
    name = path.rpartition("/")[2]
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        "Cache-Control": "private, no-cache",  # never kept by a shared cache
    }
    return blob_download(request, found.store, actor, f"{oaio_id}/{version_stamp}/{path}", **headers)


@router.post("/o/{oaio_id}/restore")
def restore(request: Request, oaio_id: str, actor: WebActorDep, form: FormDep) -> Response:
    """Make a version (or one file of it, with ``path``) the newest; back to where the form was."""
    oaio_id = validate_oaio_id(oaio_id)
    stamp = validate_stamp(form.get("stamp", ""), "stamp")
    path = validate_file_path(form["path"], "path") if form.get("path") else ""
    new = catalog(request).restore(actor, oaio_id, stamp, path)
    what = f"{path} as of {when(stamp)}" if path else f"the version of {when(stamp)}"
    target = object_url(oaio_id, "file", path=path) if path else object_url(oaio_id)
    return redirect(target, f"Restored {what}: it is the newest version now ({when(new)}).")
