"""The blob store's routes under ``/api/hub/blobs/`` (the object-service protocol; ``docs/hub-api.md``).

Session and CSRF exactly as every hub route. ``<name>`` is a storage key ``<oaio_id>/<client_stamp>/<path>``,
percent-encoded per component, validated with :func:`oaiod.storage.keys.validate_key` (unsafe: 400). The hub's
body-limit middleware does not buffer these routes: ``data/`` streams to disk, JSON bodies are read here up to
:data:`MAX_JSON_BODY`. The rules behind each route are in :mod:`oaiod.hub.blobstore`
and :mod:`oaiod.hub.blobuploads`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from oaiod.errors import ValidationError
from oaiod.hub.blobcontent import ContentStore
from oaiod.hub.blobstore import BlobInfo, BlobStore
from oaiod.hub.blobuploads import Uploads
from oaiod.hub.deps import CSRF_COOKIE, ActorDep, json_body
from oaiod.hub.errors import BadRequest, RangeNotSatisfiable, TooLarge, UnsupportedMedia
from oaiod.hub.metrics import counting_chunks, counting_sent, hub_metrics, scope_metrics
from oaiod.hub.service import Actor
from oaiod.model import validate_exact_keys, validate_stamp
from oaiod.storage.keys import validate_key, validate_prefix

log = logging.getLogger("oaiod.hub.blobs")

router = APIRouter(prefix="/hub/blobs")

FEATURE = "blobs"
MAX_JSON_BODY = 256 * 1024  #: bytes of a JSON body (an inline upload of INLINE_MAX base64-encoded fits)
MAX_COPY_PAIRS = 1000  #: pairs in one ``copy-many/`` request
MAX_COPY_BODY = 4 * 1024 * 1024  #: bytes of a ``copy-many/`` body (1000 pairs of keys of up to ~2 KiB each)
MAX_COPY_EXCLUDE = 100_000  #: relative keys in the ``exclude`` of one ``copy-prefix/`` (its body ≤ MAX_COPY_BODY too)
INLINE_MAX = 64 * 1024  #: largest object the hub takes inline with createUpload
WRITE_BLOCK = 4 * 1024 * 1024  #: bytes of an upload gathered before each disk write
MAX_BLOB_SIZE = 1 << 40  #: 1 TiB
LIST_PAGE = 1000
MAX_CURSOR = (1 << 31) - 1  #: largest ``after`` of a listing: ``blobs.id`` is a 32-bit integer on PostgreSQL
DIRECT_DOWNLOAD = "directGetUrl"  #: download method: a pre-signed URL on the content store, not on the hub
DIRECT_UPLOAD = "directParts"  #: upload method: pre-signed part URLs on the content store
_UPLOAD_ID = re.compile(r"\A[A-Za-z0-9_-]{22,128}\Z")  # ≥ 128 bits of URL-safe base64
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")
_RANGE_SPEC = re.compile(r"\A(?:([0-9]{1,19})-([0-9]{0,19})|-([0-9]{1,19}))\Z")
#: the routes that change something, and their methods: a GET there answers 200 (see :func:`csrf_hint`)
CHANGING_ROUTES = {
    "upload/{name:path}": "PUT or DELETE",
    "data/{name:path}": "PUT",
    "finish-upload/{name:path}": "POST",
    "start-download/{name:path}": "PUT",
    "object/{name:path}": "DELETE",
    "prefix/{name:path}": "DELETE",
    "copy/": "POST",
    "copy-many/": "POST",
    "copy-prefix/": "POST",
    "blocks/{name:path}": "PUT",
}


class DownloadResponse(FileResponse):
    """A content file, held by the blob store until the answer ends (:meth:`BlobStore.release_download` runs
    however the answer ends: sent, cut or failed)."""

    chunk_size = 1024 * 1024  # 64 KiB chunks make a large download CPU-bound

    def __init__(self, path: Path, release: Callable[[], None], **kwargs: Any) -> None:
        self._release = release
        try:
            super().__init__(path, **kwargs)
        except BaseException:
            release()
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # without "http.response.pathsend" the file is read here, not by the server after this returns
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        send = counting_sent(send, scope_metrics(scope).blob_sent)
        try:
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._release)


def get_store(request: Request) -> BlobStore:
    return cast(BlobStore, request.app.state.blobs)  # put there by create_app


def get_uploads(request: Request) -> Uploads:
    return cast(Uploads, request.app.state.blob_uploads)


async def blob_json(request: Request) -> Any:
    """The JSON body, refused beyond :data:`MAX_JSON_BODY` (the middleware does not limit these routes)."""
    return await read_json_body(request, MAX_JSON_BODY)


async def copy_many_json(request: Request) -> Any:
    """The JSON body of ``copy-many/``, refused beyond :data:`MAX_COPY_BODY`."""
    return await read_json_body(request, MAX_COPY_BODY)


async def read_json_body(request: Request, limit: int) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMedia(f"send the body as application/json, not {content_type[:60] or 'nothing'!r}")
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"this blob request's body is at most {limit} bytes")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # json_body reads it from here
    return await json_body(request)


StoreDep = Annotated[BlobStore, Depends(get_store)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
JsonDep = Annotated[Any, Depends(blob_json)]
CopyManyJsonDep = Annotated[Any, Depends(copy_many_json)]


def checked_name(name: str, fld: str = "name") -> str:
    key = validate_key(name, fld)
    if len(key.split("/", 1)[0]) > 255:
        raise ValidationError(fld, "the first component (the oaio id) is longer than 255 characters")
    return key


def _upload_id(value: Any) -> str:
    if not isinstance(value, str) or not _UPLOAD_ID.match(value):
        raise ValidationError("uploadId", "must be 22 to 128 URL-safe base64 characters (at least 128 random bits)")
    return value


def _size(value: Any, fld: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError(fld, "must be an integer ≥ 0")
    if value > MAX_BLOB_SIZE:
        raise TooLarge(f"{fld} {value} is more than the hub's limit of {MAX_BLOB_SIZE} bytes")
    return value


def _url(request: Request, route: str, name: str, **params: str) -> str:
    """The absolute URL of a blob route, on the host and port the client reached."""
    query = f"?{urlencode(params)}" if params else ""
    return f"{request.base_url}api/hub/blobs/{route}/{quote(name, safe='/')}{query}"


# -- routes -------------------------------------------------------------------------------------------------------


def csrf_hint(methods: str) -> Callable[[], dict[str, str]]:
    """A GET on a changing route answers 200 without a session, as part A's POST routes do: the published
    client fetches its CSRF cookie with a GET on the URL it is about to change (the middleware sets it)."""

    def hint() -> dict[str, str]:
        return {"detail": f"send {methods} here; this GET only hands out the {CSRF_COOKIE} cookie"}

    return hint


for _route, _methods in CHANGING_ROUTES.items():
    router.add_api_route(f"/{_route}", csrf_hint(_methods), methods=["GET"], include_in_schema=False)


@router.get("/ping")
def ping(_actor: ActorDep) -> dict[str, Any]:
    """Answers without doing anything (the session is checked)."""
    return {"alive": True}


@router.put("/upload/{name:path}")
def create_upload(request: Request, name: str, actor: ActorDep, uploads: UploadsDep, body: JsonDep) -> dict[str, Any]:
    """createUpload: ``{uploadId, sha256, size, expires?, proposedUploadMethods}`` → ``{expires, uploadMethod}``.

    ``directParts`` (an oaiod extension) answers pre-signed part URLs of the bucket when the content store takes
    direct uploads; otherwise ``putUrl`` (the hub's ``data/``) as before."""
    name = checked_name(name)
    validate_exact_keys(body, ("uploadId", "sha256", "size", "proposedUploadMethods"), "body", optional=("expires",))
    upload_id = _upload_id(body["uploadId"])
    sha256 = body["sha256"]
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ValidationError("sha256", "must be 64 lowercase hex digits")
    size = _size(body["size"], "size")
    expires = validate_stamp(body["expires"], "expires") if body.get("expires") is not None else None
    methods = body["proposedUploadMethods"]
    validate_exact_keys(methods, (), "proposedUploadMethods", optional=("dataInline", "putUrl", DIRECT_UPLOAD))
    inline = _inline_data(methods["dataInline"]) if "dataInline" in methods else None
    for proposed in ("putUrl", DIRECT_UPLOAD):
        if proposed in methods:
            required = ("contentType", "contentLength") if proposed == "putUrl" else ("contentLength",)
            validate_exact_keys(methods[proposed], required, proposed, optional=("contentType",))
            if _size(methods[proposed]["contentLength"], f"{proposed}.contentLength") != size:
                raise ValidationError(f"{proposed}.contentLength", "must equal size")
    row = uploads.create_upload(actor, name, upload_id, sha256, size, expires, inline)
    if inline is not None:
        hub_metrics(request).blob_received.inc(len(inline))
    method: dict[str, Any] = {}
    parts = uploads.direct_parts(row) if inline is None and DIRECT_UPLOAD in methods else None
    if inline is not None:
        method = {"dataInline": True}
    elif parts is not None:  # minted after the write check of create_upload; the bytes bypass the hub
        method = {DIRECT_UPLOAD: {"partSize": parts.part_size, "urls": parts.urls, "expires": parts.expires}}
    elif "putUrl" in methods:
        url = _url(request, "data", name, uploadId=upload_id, offset="0")
        headers = {"Content-Type": "application/octet-stream"}
        method = {"putUrl": {"url": url, "expires": row.deadline, "headers": headers}}
    return {"expires": row.deadline, "uploadMethod": method}


def _inline_data(value: Any) -> bytes:
    validate_exact_keys(value, ("contentType", "objectData"), "dataInline")
    data = value["objectData"]
    if not isinstance(data, str) or len(data) > (INLINE_MAX * 4 // 3) + 4:
        raise ValidationError("dataInline.objectData", f"must be base64 of at most {INLINE_MAX} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("dataInline.objectData", "is not valid base64") from None


@router.delete("/upload/{name:path}")
def cancel_upload(name: str, actor: ActorDep, uploads: UploadsDep) -> dict[str, Any]:
    """Drop the unfinished upload of ``name`` (to start over with a new uploadId); idempotent."""
    return {"cancelled": uploads.cancel_upload(actor, checked_name(name))}


@router.put("/data/{name:path}")
async def put_data(
    request: Request,
    name: str,
    actor: ActorDep,
    uploads: UploadsDep,
    uploadId: str = "",
    offset: int = 0,
) -> dict[str, Any]:
    """The bytes of an upload from ``offset`` on, streamed to disk; answers how many the hub now holds."""
    name, upload_id = checked_name(name), _upload_id(uploadId)
    if offset < 0:
        raise ValidationError("offset", "must be ≥ 0")
    target = await run_in_threadpool(uploads.target, actor, name, upload_id, offset)
    buffer = bytearray()
    try:
        try:
            async for chunk in counting_chunks(request.stream(), hub_metrics(request).blob_received):
                buffer += chunk
                if len(buffer) >= WRITE_BLOCK:
                    await run_in_threadpool(target.write, buffer)
                    buffer = bytearray()
        except ClientDisconnect:
            log.info("blob upload of %r by %s: the client went away; keeping what arrived", name, actor.username)
        if buffer:
            await run_in_threadpool(target.write, buffer)
    finally:
        received = await run_in_threadpool(target.close)
    return {"received": received}


@router.get("/upload-status/{name:path}")
def upload_status(name: str, actor: ActorDep, uploads: UploadsDep, uploadId: str = "") -> dict[str, int]:
    """``{received, size}``: resume an upload at ``received``."""
    return uploads.received(actor, checked_name(name), _upload_id(uploadId))


@router.post("/finish-upload/{name:path}")
def finish_upload(name: str, actor: ActorDep, uploads: UploadsDep, body: JsonDep) -> dict[str, Any]:
    """finishUpload: ``{uploadId}``; verifies size and sha256 (mismatch: 400, upload discarded); idempotent."""
    validate_exact_keys(body, ("uploadId",), "body")
    return uploads.finish_upload(actor, checked_name(name), _upload_id(body["uploadId"])).as_dict()


@router.put("/start-download/{name:path}")
def start_download(request: Request, name: str, actor: ActorDep, store: StoreDep, body: JsonDep) -> dict[str, Any]:
    """startDownload: ``{acceptDownloadMethods: {simple?, getUrl?, directGetUrl?}}`` → method, url, hashes, size;
    406 if none. ``directGetUrl`` (an oaiod extension a client announces when it can fetch from another origin
    without the hub's session) answers a pre-signed URL of the bucket when the content store hands them out."""
    name = checked_name(name)
    validate_exact_keys(body, ("acceptDownloadMethods",), "body")
    accepted = body["acceptDownloadMethods"]
    if not isinstance(accepted, dict):
        raise ValidationError("acceptDownloadMethods", "must be an object")
    info = store.metadata(actor, name)
    hashes = {"hashes": {"sha256": info.sha256}, "size": info.size}
    direct = store.content.download_url(info.sha256, info.size) if accepted.get(DIRECT_DOWNLOAD) is True else None
    if direct is not None:  # minted after the rights check above; the hub's session never goes to the bucket
        return {"method": DIRECT_DOWNLOAD, "url": direct.url, **hashes, "expires": direct.expires}
    answer = {"url": _url(request, "download", name), **hashes}
    if accepted.get("getUrl") is True:
        return {"method": "getUrl", **answer, "expires": None}
    if accepted.get("simple") is True:
        return {"method": "simple", **answer}
    raise NotAcceptable("none of the accepted download methods is offered; the hub offers simple and getUrl")


class NotAcceptable(BadRequest):
    status, code = 406, "not_acceptable"


@router.get("/download/{name:path}")
def download(request: Request, name: str, actor: ActorDep, store: StoreDep) -> Response:
    """The object's bytes (``Range`` honoured, for resuming a download); ``X-Oaiod-Sha256`` carries its hash."""
    return blob_download(request, store, actor, checked_name(name))


def blob_download(request: Request, store: BlobStore, actor: Actor, name: str, **headers: str) -> Response:
    """A blob's bytes as the answer to ``request``, streamed, one ``Range`` answered 206 (a bad one: 400/416
    before anything is held), ``headers`` added (the web app's ``Content-Disposition``). Read access is the blob
    store's (:mod:`oaiod.hub.blobaccess`): 404 for a name the actor may not read."""
    info = store.open_download(actor, name)
    release = partial(store.release_download, info.sha256)
    try:
        check_range(request.headers.get("range"), info.size)
        path = store.content.local_path(info.sha256)
    except BaseException:
        release()
        raise
    headers = {**headers, "X-Oaiod-Sha256": info.sha256}
    if path is not None:
        return DownloadResponse(path, release, media_type="application/octet-stream", headers=headers)
    return StreamedDownload(store.content, info, request.headers.get("range"), release, headers)


class HeldStream(StreamingResponse):
    """A streamed answer of content the blob store holds for it: ``_release`` runs however the answer ends (sent,
    cut or failed), and the bytes sent count as blob bytes out."""

    _release: Callable[[], None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, counting_sent(send, scope_metrics(scope).blob_sent))
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._release)


class StreamedDownload(HeldStream):
    """Content the hub reads from a content store that is not a local file (a bucket), held until the answer
    ends. One byte range is answered 206; several are answered with the whole object (200), as RFC 9110
    allows."""

    def __init__(self, content: ContentStore, info: BlobInfo, range_header: str | None,
                 release: Callable[[], None], headers: dict[str, str]) -> None:  # fmt: skip
        self._release = release
        start, end = _single_range(range_header, info.size)
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
        status = 200
        if (start, end) != (0, info.size):
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        body = _content_blocks(content, info.sha256, start, end)
        super().__init__(body, status_code=status, media_type="application/octet-stream", headers=headers)


def _single_range(header: str | None, size: int) -> tuple[int, int]:
    """``(start, end)`` of a single valid byte range (already checked by :func:`check_range`); the whole object
    for none or several."""
    if header is None or "," in header:
        return 0, size
    match = _RANGE_SPEC.match(header.partition("=")[2].strip())
    if match is None:
        return 0, size
    first, last, suffix = match.groups()
    if suffix is not None:
        return max(size - int(suffix), 0), size
    return int(first), min(int(last) + 1, size) if last else size


def _content_blocks(content: ContentStore, sha256: str, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` of the content in blocks of :data:`DownloadResponse.chunk_size`."""
    with contextlib.closing(content.open(sha256, start)) as file:
        left = end - start
        while left:
            block = file.read(min(left, DownloadResponse.chunk_size))
            if not block:
                raise OSError(f"the content {sha256} ended {left} bytes early")
            left -= len(block)
            yield block


def check_range(header: str | None, size: int) -> None:
    """Refuse, as JSON, a ``Range`` the download would not serve: malformed 400, not inside the object 416.

    Stricter than RFC 9110 where the file response is: every range must start inside the object."""
    if header is None:
        return
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes":
        raise BadRequest(f"Range {header[:80]!r}: only byte ranges are served")
    for spec in specs.split(","):
        match = _RANGE_SPEC.match(spec.strip())
        if match is None:
            raise BadRequest(f"Range {header[:80]!r}: each range is FIRST-[LAST] or -SUFFIX (at most 19 digits)")
        first, last, suffix = match.groups()
        if last and int(last) < int(first):
            raise BadRequest(f"Range {header[:80]!r}: a range ends before it starts")
        start = int(first) if first is not None else max(size - int(suffix), 0)
        if start >= size or (suffix is not None and int(suffix) == 0):
            raise RangeNotSatisfiable(f"Range {header[:80]!r} is not inside the object of {size} bytes", size)


@router.get("/metadata/{name:path}")
def metadata(name: str, actor: ActorDep, store: StoreDep) -> dict[str, Any]:
    """``{name, size, sha256, created, expires}``."""
    return store.metadata(actor, checked_name(name)).as_dict()


@router.delete("/object/{name:path}")
def delete_object(name: str, actor: ActorDep, store: StoreDep) -> dict[str, Any]:
    """Remove an object (and any unfinished upload of it); idempotent."""
    return {"deleted": store.delete(actor, checked_name(name))}


@router.delete("/prefix/{prefix:path}")
def delete_prefix(prefix: str, actor: ActorDep, store: StoreDep) -> dict[str, Any]:
    """Remove every object in the folder ``prefix``; idempotent."""
    return {"deleted": store.delete_prefix(actor, checked_name(prefix, "prefix"))}


@router.post("/copy/")
def copy(actor: ActorDep, store: StoreDep, body: JsonDep) -> dict[str, Any]:
    """``{src, dst}``: ``dst`` names the content of ``src`` at once (no bytes move); replaces ``dst``."""
    validate_exact_keys(body, ("src", "dst"), "body")
    return store.copy(actor, checked_name(body["src"], "src"), checked_name(body["dst"], "dst")).as_dict()


@router.post("/copy-many/")
def copy_many(actor: ActorDep, store: StoreDep, body: CopyManyJsonDep) -> dict[str, int]:
    """``{pairs: [{src, dst}, …]}`` (at most :data:`MAX_COPY_PAIRS`): ``copy/`` for each pair, in one transaction
    (all or none) → ``{copied: N}``. The pairs must be independent: each ``dst`` once, none also a ``src``."""
    validate_exact_keys(body, ("pairs",), "body")
    return {"copied": store.copy_many(actor, _copy_pairs(body["pairs"]))}


def _copy_pairs(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_COPY_PAIRS:
        raise ValidationError("pairs", f"must be a list of at most {MAX_COPY_PAIRS} {{src, dst}} objects")
    pairs: list[tuple[str, str]] = []
    for number, pair in enumerate(value):
        validate_exact_keys(pair, ("src", "dst"), f"pairs[{number}]")
        pairs.append(
            (checked_name(pair["src"], f"pairs[{number}].src"), checked_name(pair["dst"], f"pairs[{number}].dst"))
        )
    targets = {dst for _src, dst in pairs}
    if len(targets) != len(pairs):
        raise ValidationError("pairs", "names a dst twice; each pair must have its own dst")
    if both := targets.intersection(src for src, _dst in pairs):
        raise ValidationError("pairs", f"{min(both)[:200]!r} is both a src and a dst; copy in two requests")
    return pairs


@router.post("/copy-prefix/")
def copy_prefix(actor: ActorDep, store: StoreDep, body: CopyManyJsonDep) -> dict[str, int]:
    """``{src, dst, exclude: [relative key, …]}``: every object of the folder ``src`` but the excluded ones named at
    the same relative key in the folder ``dst`` (``copy/`` for each, no bytes move), in one transaction →
    ``{copied: N}``. The folders must not overlap; idempotent."""
    validate_exact_keys(body, ("src", "dst", "exclude"), "body")
    src = checked_name(validate_prefix(body["src"], "src"), "src")
    dst = checked_name(validate_prefix(body["dst"], "dst"), "dst")
    if src == dst or dst.startswith(src + "/") or src.startswith(dst + "/"):
        raise ValidationError("dst", "src and dst overlap; copy between separate folders")
    exclude = body["exclude"]
    if not isinstance(exclude, list) or len(exclude) > MAX_COPY_EXCLUDE:
        raise ValidationError("exclude", f"must be a list of at most {MAX_COPY_EXCLUDE} relative keys")
    skipped = {validate_key(key, f"exclude[{number}]") for number, key in enumerate(exclude)}
    return {"copied": store.copy_prefix(actor, src, dst, skipped)}


@router.get("/list/")
def listing(
    actor: ActorDep, store: StoreDep, prefix: str = "", after: int = 0, limit: int = LIST_PAGE
) -> dict[str, Any]:
    """``{items: [{name, size, sha256, created, expires}], next}``: the folder ``prefix``; ``next`` is the
    ``after`` of the next page (null at the end)."""
    prefix = validate_prefix(prefix)
    if prefix:
        checked_name(prefix, "prefix")
    if not 1 <= limit <= LIST_PAGE:
        raise ValidationError("limit", f"must be 1 to {LIST_PAGE}")
    if not 0 <= after <= MAX_CURSOR:
        raise ValidationError("after", "must be the next of a previous page (0 for the first)")
    items, following = store.listing(actor, prefix, after, limit)
    return {"items": [item.as_dict() for item in items], "next": following}


def mount(app: Any) -> None:
    """Add the blob store to a hub application (routes, ``app.state.blobs``, the ``blobs`` feature)."""
    app.state.blobs = BlobStore(app.state.service)
    log.info("blob store: content in the %s", app.state.blobs.content.describe())
    app.state.blob_uploads = Uploads(app.state.blobs)
    app.include_router(router, prefix="/api")
    app.state.features.append(FEATURE)
    from oaiod.hub import blobblocks  # its routes build on this module's

    app.include_router(blobblocks.router, prefix="/api")
    app.state.features.append(blobblocks.FEATURE)
