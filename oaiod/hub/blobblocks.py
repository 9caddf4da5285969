"""The routes of block transfer under ``/api/hub/blobs/`` (``docs/hub-api.md``, "Block transfer").

``recipe/<name>`` (PUT) names a content as a list of blocks, ``blocks/<name>`` sends the blocks the hub answered as
missing, ``recipe/<name>`` (GET) tells a reader the blocks of a name's content so it fetches only those it lacks
(with ``Range`` on ``download/``). The rules are in :mod:`oaiod.hub.blobrecipes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from oaiod.errors import ValidationError
from oaiod.hub.blobrecipes import MAX_BLOCK, MAX_BLOCKS, BlockUploads
from oaiod.hub.blobs import _SHA256, checked_name, read_json_body
from oaiod.hub.deps import ActorDep
from oaiod.hub.errors import BadRequest, TooLarge
from oaiod.hub.metrics import counting_chunks, hub_metrics
from oaiod.model import validate_exact_keys, validate_stamp

router = APIRouter(prefix="/hub/blobs")

FEATURE = "blob-blocks"
MAX_RECIPE_BODY = 16 * 1024 * 1024  #: bytes of a recipe (MAX_BLOCKS blocks of ~80 bytes of JSON each fit)
FRAME_HEADER = 4  #: bytes of a block's length (big-endian) before its bytes in a ``blocks/`` body
MAX_BLOCKS_BODY = 64 * 1024 * 1024  #: bytes of one ``blocks/`` body (a client sends more in several requests)
#: received bytes of blocks staged per worker-thread call (a call per 256 KiB block was a quarter of the hub's
#: Python time receiving a large file); a request holds at most this plus one block and one partial block
STAGE_BATCH = 4 * 1024 * 1024


def get_blocks(request: Request) -> BlockUploads:
    return cast(BlockUploads, request.app.state.blobs.blocks)


async def recipe_json(request: Request) -> Any:
    return await read_json_body(request, MAX_RECIPE_BODY)


BlocksDep = Annotated[BlockUploads, Depends(get_blocks)]
RecipeJsonDep = Annotated[Any, Depends(recipe_json)]


class Frames:
    """Splits a ``blocks/`` body into its blocks: each is a 4-byte big-endian length (1 to :data:`MAX_BLOCK`) and
    that many bytes."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The blocks completed by ``chunk``; a length out of bounds is 400."""
        self._buffer += chunk
        while len(self._buffer) >= FRAME_HEADER:
            size = int.from_bytes(self._buffer[:FRAME_HEADER], "big")
            if not 0 < size <= MAX_BLOCK:
                raise BadRequest(f"a block is 1 to {MAX_BLOCK} bytes, not {size}")
            if len(self._buffer) < FRAME_HEADER + size:
                return
            with memoryview(self._buffer) as view:  # one copy of the block, not a slice and then its bytes
                block = bytes(view[FRAME_HEADER : FRAME_HEADER + size])
            del self._buffer[: FRAME_HEADER + size]
            yield block

    def finish(self) -> None:
        if self._buffer:
            raise BadRequest(f"the body ends inside a block ({len(self._buffer)} bytes left over)")


@router.put("/blocks/{name:path}")
async def put_blocks(request: Request, name: str, actor: ActorDep, blocks: BlocksDep) -> dict[str, Any]:
    """Blocks for a recipe of ``name``'s place (framed, see :class:`Frames`) → ``{stored: [sha256, …]}``, each
    kept under the sha256 the hub computed. Needs write access to ``name``."""
    folder = await run_in_threadpool(blocks.stage_folder, actor, checked_name(name))
    frames, stored, received = Frames(), [], 0
    pending: list[bytes] = []  # received blocks not yet staged: one worker-thread call per STAGE_BATCH bytes
    async for chunk in counting_chunks(request.stream(), hub_metrics(request).blob_received):
        received += len(chunk)
        if received > MAX_BLOCKS_BODY:
            raise TooLarge(f"a blocks/ body is at most {MAX_BLOCKS_BODY} bytes; send the rest in another request")
        pending += frames.feed(chunk)
        if sum(map(len, pending)) >= STAGE_BATCH:
            stored += await run_in_threadpool(blocks.stage_many, folder, pending)
            pending = []
    frames.finish()
    if pending:
        stored += await run_in_threadpool(blocks.stage_many, folder, pending)
    return {"stored": stored}


@router.put("/recipe/{name:path}")
def put_recipe(name: str, actor: ActorDep, blocks: BlocksDep, body: RecipeJsonDep) -> dict[str, Any]:
    """``{sha256, blocks: [[sha256, size], …], expires?}``: ``name`` is the blocks' concatenation → ``{missing:
    [sha256, …], sendWhole}`` (send them with ``blocks/``, then this again; or, with ``sendWhole``, upload the file
    whole as it would be without blocks), or ``{missing: [], name, size, sha256, …}`` once it is stored."""
    name = checked_name(name)
    validate_exact_keys(body, ("sha256", "blocks"), "body", optional=("expires",))
    sha256 = _sha256(body["sha256"], "sha256")
    expires = validate_stamp(body["expires"], "expires") if body.get("expires") is not None else None
    listed = _blocks(body["blocks"])
    missing, info = blocks.put_recipe(actor, name, sha256, listed, expires)
    if info is not None:
        return {"missing": [], **info.as_dict()}
    # a bucket that takes uploads directly moves a file the hub has no block of better than the hub would
    whole = blocks.store.content.direct() and len(missing) == len({block for block, _size in listed})
    return {"missing": missing, "sendWhole": whole}


@router.get("/recipe/{name:path}")
def get_recipe(name: str, actor: ActorDep, blocks: BlocksDep) -> dict[str, Any]:
    """``{name, size, sha256, blocks}``: the blocks (``[[sha256, size], …]``) of the content, or null when it is
    stored whole."""
    info, recipe = blocks.recipe(actor, checked_name(name))
    listed = [[block.block, block.size] for block in recipe] if recipe is not None else None
    return {"name": info.name, "size": info.size, "sha256": info.sha256, "blocks": listed}


def _sha256(value: Any, fld: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ValidationError(fld, "must be 64 lowercase hex digits")
    return value


def _blocks(value: Any) -> list[tuple[str, int]]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_BLOCKS:
        raise ValidationError("blocks", f"must be a list of 1 to {MAX_BLOCKS} [sha256, size] pairs")
    blocks: list[tuple[str, int]] = []
    for number, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValidationError(f"blocks[{number}]", "must be [sha256, size]")
        size = pair[1]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_BLOCK:
            raise ValidationError(f"blocks[{number}]", f"size must be 1 to {MAX_BLOCK}")
        blocks.append((_sha256(pair[0], f"blocks[{number}]"), size))
    return blocks
