"""The blob store's batch routes, ``put-many/`` and ``get-many/``: many small blobs per request (``docs/hub-api.md``).

Session and CSRF exactly as every hub route. The wire format (``application/x-oaiod-blob-batch``, both ways):
one line of JSON ending in ``\\n``, then raw bytes.

- ``POST put-many/``: the line is ``{"items": [{"name", "size", "sha256"}, …]}`` (at most :data:`MAX_ITEMS`,
  distinct safe names, at most :data:`MAX_ITEM_LIST` bytes), followed by each item's bytes in that order and
  sizes, nothing more. The whole body is at most the hub's ``body_limit``. Answer: ``{"items": [...]}``, per
  item the object's metadata or ``{status, error, reason}``. A malformed, short or long body is a 4xx JSON
  answer and stores nothing.
- ``POST get-many/``: a JSON body ``{"names": [...]}`` (at most :data:`MAX_ITEMS`). Answer: per item, in order,
  a line ``{"name", "size", "sha256"}`` followed by ``size`` bytes, or a line ``{"name", "status", "error",
  "reason"}`` with no bytes. The answer covers a prefix of the names (``X-Oaiod-Batch-Count`` says how many)
  holding at most about ``body_limit`` bytes; a client asks again for the rest.

The body is parsed as it streams, in bounded memory (the item list, plus :data:`FEED_BLOCK` of bytes); the
rules behind each item are in :mod:`oaiod.hub.blobbatchstore`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any, cast

import anyio
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from oaiod import jsoncodec
from oaiod.errors import ValidationError
from oaiod.hub.blobbatchstore import BatchItem, BatchReceiver, BatchStore, Outgoing, item_error
from oaiod.hub.blobcontent import ContentStore
from oaiod.hub.blobs import MAX_BLOB_SIZE, HeldStream, checked_name, csrf_hint, read_json_body
from oaiod.hub.blobstore import BlobInfo
from oaiod.hub.deps import ActorDep
from oaiod.hub.errors import BadRequest, TooLarge, UnsupportedMedia
from oaiod.hub.metrics import counting_chunks, hub_metrics
from oaiod.model import validate_exact_keys

router = APIRouter(prefix="/hub/blobs")

FEATURE = "blob-batch"
MEDIA_TYPE = "application/x-oaiod-blob-batch"
COUNT_HEADER = "X-Oaiod-Batch-Count"
MAX_ITEMS = 1000  #: items in one request
MAX_ITEM_LIST = 4 * 1024 * 1024  #: bytes of put-many's item list line, and of get-many's JSON body
FEED_BLOCK = 4 * 1024 * 1024  #: bytes of a put-many body gathered before they go to disk
SEND_BLOCK = 1024 * 1024  #: bytes of a get-many answer gathered per write
READ_AHEAD = 8  #: contents of a get-many answer read at once from a bucket
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")

for _route in ("put-many/", "get-many/"):
    router.add_api_route(f"/{_route}", csrf_hint("POST"), methods=["GET"], include_in_schema=False)


def get_batches(request: Request) -> BatchStore:
    return cast(BatchStore, request.app.state.blob_batches)  # put there by create_app


BatchesDep = Annotated[BatchStore, Depends(get_batches)]


# -- put-many -----------------------------------------------------------------------------------------------------


@router.post("/put-many/")
async def put_many(request: Request, actor: ActorDep, batches: BatchesDep) -> dict[str, Any]:
    """Store every item of a framed body (see the module docstring) → ``{"items": [per-item answer, …]}``."""
    limit = request.app.state.settings.body_limit
    length = _announced_length(request, limit)
    stream = counting_chunks(request.stream(), hub_metrics(request).blob_received)
    try:
        line, rest = await _first_line(stream)
        items = parse_item_list(line)
        total = len(line) + 1 + sum(item.size for item in items)
        if total > limit:
            raise TooLarge(f"the batch holds {total} bytes; the hub takes at most {limit} per request", limit=limit)
        if length is not None and length != total:
            raise BadRequest(f"Content-Length is {length}, but the item list and the sizes it announces make {total}")
        receiver = await run_in_threadpool(batches.receiver, items)
        try:
            await _receive(stream, rest, receiver)
            answers = await run_in_threadpool(batches.commit, actor, receiver)
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(receiver.discard)
    except ClientDisconnect:
        raise BadRequest("the client went away before the whole batch arrived; nothing was stored") from None
    return {"items": answers}


def _announced_length(request: Request, limit: int) -> int | None:
    """The body's ``Content-Length`` (None when chunked); 415 for another media type, 413 beyond ``limit``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != MEDIA_TYPE:
        raise UnsupportedMedia(f"send the batch as {MEDIA_TYPE}, not {content_type[:60] or 'nothing'!r}")
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not header.isascii() or not header.isdigit():
        raise BadRequest("Content-Length is not a number")
    if int(header) > limit:
        raise TooLarge(f"the body is {header} bytes; the hub takes at most {limit} per request", limit=limit)
    return int(header)


async def _first_line(stream: AsyncIterator[bytes]) -> tuple[bytes, bytes]:
    """The item list line (without its ``\\n``) and the bytes after it that arrived with it."""
    buffer = bytearray()
    async for chunk in stream:
        end = chunk.find(b"\n")
        if end >= 0:
            if len(buffer) + end > MAX_ITEM_LIST:
                break
            return bytes(buffer + chunk[:end]), chunk[end + 1 :]
        buffer += chunk
        if len(buffer) > MAX_ITEM_LIST:
            break
    else:
        raise BadRequest("the body ends before the end of its first line, the item list")
    raise TooLarge(
        f"the item list is more than {MAX_ITEM_LIST} bytes; send fewer or shorter names", limit=MAX_ITEM_LIST
    )


def parse_item_list(line: bytes) -> list[BatchItem]:
    """The items of a put-many item list line; 400 unless it is exactly ``{"items": [{name, size, sha256}]}`` with
    at most :data:`MAX_ITEMS` distinct safe names, sizes ≥ 0 and sha256 as 64 lowercase hex digits."""
    try:
        body = jsoncodec.loads(line)  # NaN/Infinity refused, as in every request body
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"the item list is not valid JSON: {str(exc)[:200]}") from None
    validate_exact_keys(body, ("items",), "body")
    listed = body["items"]
    if not isinstance(listed, list) or len(listed) > MAX_ITEMS:
        raise ValidationError("items", f"must be a list of at most {MAX_ITEMS} {{name, size, sha256}} objects")
    items: list[BatchItem] = []
    for number, item in enumerate(listed):
        fld = f"items[{number}]"
        validate_exact_keys(item, ("name", "size", "sha256"), fld)
        size, sha256 = item["size"], item["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_SIZE:
            raise ValidationError(f"{fld}.size", "must be an integer ≥ 0")
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ValidationError(f"{fld}.sha256", "must be 64 lowercase hex digits")
        items.append(BatchItem(checked_name(item["name"], f"{fld}.name"), size, sha256))
    if len({item.name for item in items}) != len(items):
        raise ValidationError("items", "names an item twice; each name once per batch")
    return items


async def _receive(stream: AsyncIterator[bytes], first: bytes, receiver: BatchReceiver) -> None:
    """Feed the rest of the body to ``receiver`` in blocks of :data:`FEED_BLOCK` (disk writes in the thread
    pool); 400 when it is shorter or longer than announced."""
    buffer = bytearray(first)
    async for chunk in stream:
        buffer += chunk
        if len(buffer) >= FEED_BLOCK:
            await run_in_threadpool(receiver.feed, buffer)
            buffer = bytearray()
    if buffer:
        await run_in_threadpool(receiver.feed, buffer)
    receiver.finish()


# -- get-many -----------------------------------------------------------------------------------------------------


class BatchDownloadResponse(HeldStream):
    """The framed answer of ``get-many/``; the content it holds is released however the answer ends."""

    def __init__(self, items: list[Outgoing], content: ContentStore, release: Callable[[], None]) -> None:
        self._release = release
        lines = [frame_line(item) for item in items]
        length = sum(map(len, lines)) + sum(item.info.size for item in items if item.held and item.info)
        headers = {"Content-Length": str(length), COUNT_HEADER: str(len(items))}
        super().__init__(_frames(items, lines, content), media_type=MEDIA_TYPE, headers=headers)


def frame_line(item: Outgoing) -> bytes:
    """The JSON line before an item's bytes (ASCII: names with any character stay valid JSON)."""
    if item.error is not None:
        head: dict[str, Any] = item_error(item.name, item.error)
    else:
        assert item.info is not None
        head = {"name": item.name, "size": item.info.size, "sha256": item.info.sha256}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n"


def _frames(items: list[Outgoing], lines: list[bytes], content: ContentStore) -> Iterator[bytes]:
    """The answer's bytes in blocks of about :data:`SEND_BLOCK` (run in the thread pool by the response)."""
    buffer = bytearray()
    sent = [item.info for item in items if item.held and item.info is not None]
    blobs = iter(_read_ahead(content, sent)) if sent and content.local_path(sent[0].sha256) is None else None
    for item, line in zip(items, lines, strict=True):
        buffer += line
        if not item.held or item.info is None:
            continue
        if blobs is not None:  # a bucket: read several at once (each a request), in order
            buffer += next(blobs)
        else:
            with contextlib.closing(content.open(item.info.sha256)) as file:
                left = item.info.size
                while left:
                    block = file.read(min(left, SEND_BLOCK))
                    if not block:
                        raise OSError(f"the content {item.info.sha256} is shorter than its {item.info.size} bytes")
                    buffer += block
                    left -= len(block)
                    if len(buffer) >= SEND_BLOCK:
                        yield bytes(buffer)
                        buffer.clear()
        if len(buffer) >= SEND_BLOCK:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _read_ahead(content: ContentStore, infos: list[BlobInfo]) -> Iterator[bytes]:
    """Each content whole, in order, read on :data:`READ_AHEAD` threads: a bucket answers small objects at the
    pace of its round trips. Memory: the answer's bytes at most (``open_many`` kept them within the budget)."""
    with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="blob-get-many") as pool:
        yield from pool.map(partial(_read_whole, content), infos)


def _read_whole(content: ContentStore, info: BlobInfo) -> bytes:
    with contextlib.closing(content.open(info.sha256)) as file:
        data = file.read(info.size + 1)
    if len(data) != info.size:
        raise OSError(f"the content {info.sha256} has {len(data)} bytes, not {info.size}")
    return data


@router.post("/get-many/")
async def get_many(request: Request, actor: ActorDep, batches: BatchesDep) -> BatchDownloadResponse:
    """``{"names": [...]}`` → the framed bytes of a prefix of them (see the module docstring)."""
    body = await read_json_body(request, MAX_ITEM_LIST)
    validate_exact_keys(body, ("names",), "body")
    names = _names(body["names"])
    budget = request.app.state.settings.body_limit
    items = await run_in_threadpool(batches.open_many, actor, names, budget)
    held = [item.info.sha256 for item in items if item.held and item.info is not None]
    store = batches.store
    try:
        return BatchDownloadResponse(items, store.content, partial(_release_all, store.release_download, held))
    except BaseException:
        _release_all(store.release_download, held)
        raise


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise ValidationError("names", f"must be a list of at most {MAX_ITEMS} names")
    names = [checked_name(name, f"names[{number}]") for number, name in enumerate(value)]
    if len(set(names)) != len(names):
        raise ValidationError("names", "names an item twice; each name once per batch")
    return names


def _release_all(release: Callable[[str], None], sha256s: list[str]) -> None:
    for sha256 in sha256s:
        release(sha256)


def mount(app: Any) -> None:
    """Add the batch routes to a hub application with a blob store (``app.state.blobs``) and the feature."""
    app.state.blob_batches = BatchStore(app.state.blobs)
    app.include_router(router, prefix="/api")
    app.state.features.append(FEATURE)
