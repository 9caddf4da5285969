"""Block transfer on Hub storage: a changed large file moves only its changed blocks, both ways.

Files of :data:`BLOCKS_FROM` bytes or more are cut into content-defined blocks (FastCDC 2020 through
``pyfastcdc``; about :data:`AVERAGE` bytes each, never more than :data:`LARGEST`), so an insertion shifts no
later block boundary. Choices a user may notice:

* put (:func:`put_by_blocks`): one read of the file gives its blocks' sha256s and, unless the caller knows it
  (``Transfer.sha256``), its sha256; the hub answers which blocks it lacks *for this place*
  (:mod:`oaiod.hub.blobrecipes`: only blocks of contents in the same oaio id), those are sent (``blocks/``, up to
  :data:`SEND_BATCH` bytes a request), and the name commits as their concatenation, which the hub checks against
  the whole sha256. A hub whose bucket takes uploads directly says ``sendWhole`` when no block is known yet: the
  whole file then goes straight to the bucket as before.
* get (:func:`get_by_blocks`): with a *basis* (the file at the target path, which probably shares blocks) the
  content's blocks are read from the hub (``recipe/``), the basis is cut the same way, blocks it has are copied
  from it, and only the others are fetched (``Range`` requests on ``download/``, one per run of missing blocks).
  The result is checked against the whole sha256 before the rename; a basis that changed meanwhile makes it
  fall back to a whole download.
* A content stored whole (small files, files uploaded by another client) reads whole as ever; the published
  client's layout (``<oaio_id>/<client_stamp>/<path>``, whole files) is what every ``download/`` still returns.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

from pyfastcdc import FastCDC

from oaiod.http import NO_RETRY, HTTPStatusError, iter_bytes
from oaiod.storage.base import PathLike, Progress
from oaiod.storage.errors import ObjectNotFound, PermanentStorageError, StorageError, TransientStorageError
from oaiod.storage.toolkit import atomic_local_file

if TYPE_CHECKING:
    from oaiod.storage.hub.backend import HubBackend

log = logging.getLogger(__name__)

KIB = 1024
BLOCKS_FROM = 8 * 1024 * KIB  #: files this large or larger move by blocks
AVERAGE = 256 * KIB  #: a block's average size (a 4 KiB change costs about this much each way)
SMALLEST = 64 * KIB
LARGEST = 512 * KIB  #: a changed block costs at most this (the hub takes up to 4 MiB)
READ_BUFFER = 4 * 1024 * KIB  #: bytes read from disk at once while cutting
SEND_BATCH = 8 * 1024 * KIB  #: bytes of blocks per ``blocks/`` request
SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Block:
    sha256: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class FileBlocks:
    """A file's sha256 and size, and its blocks in order."""

    sha256: str
    size: int
    blocks: list[Block]


def cut_file(file: IO[bytes], *, whole: bool = True) -> FileBlocks:
    """Cut ``file`` (read from where it is to its end) into content-defined blocks, hashing each and (unless not
    ``whole``: its sha256 is then empty) the whole in the same read; the whole sha256 runs on a second thread
    (hashlib lets go of the GIL), beside the cutting. Two buffers, reused: one is read into and cut while the
    other's bytes are hashed whole (a new 4 MiB object per read, allocated and faulted in, cost more than the
    cutting)."""
    chunker = FastCDC(AVERAGE, min_size=SMALLEST, max_size=LARGEST)
    digest, blocks, offset = hashlib.sha256(), [], 0
    view, spare = (memoryview(bytearray(LARGEST + READ_BUFFER)) for _ in range(2))
    carry = 0  # bytes at the start of ``view``: the end of the last read, after its last complete block
    with ThreadPoolExecutor(1, thread_name_prefix="oaiod-hash") as pool:
        pending: Future[None] | None = None
        while True:
            count = _read_into(file, view[carry : carry + READ_BUFFER])
            if pending is not None:
                pending.result()  # ``spare`` is free again
            pending = pool.submit(digest.update, view[carry : carry + count]) if count and whole else None
            end = carry + count
            if not end:
                break
            chunks = list(chunker.cut_buf(view[:end]))
            last = chunks.pop() if count else None  # the last cut of a buffer is only its end: cut it again
            for chunk in chunks:
                blocks.append(Block(hashlib.sha256(chunk.data).hexdigest(), offset, chunk.length))
                offset += chunk.length
            if last is None:
                break
            carry = end - last.offset
            spare[:carry] = view[last.offset : end]
            view, spare = spare, view
        if pending is not None:
            pending.result()
    return FileBlocks(digest.hexdigest() if whole else "", offset, blocks)


def _read_into(file: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``file`` (fewer bytes only at its end); how many bytes were read."""
    readinto = cast(Any, file).readinto
    total = 0
    while total < len(view):
        count = readinto(view[total:])
        if not count:
            break
        total += count
    return total


def no_route(exc: StorageError) -> bool:
    """True when the hub answered 404/405 for a route it does not have (an older hub), not for a name."""
    cause = exc.__cause__
    if not isinstance(cause, HTTPStatusError) or cause.status not in (404, 405):
        return False
    body = cause.body if isinstance(cause.body, dict) else {}
    return cause.status == 405 or body.get("reason") in ("Not Found", None)


# -- put ----------------------------------------------------------------------------------------------------------


def put_by_blocks(backend: HubBackend, key: str, file: IO[bytes], cut: FileBlocks, progress: Progress | None) -> bool:
    """Store ``file`` (cut as ``cut``) under ``key`` by its blocks; False when the hub would rather take it whole
    (no such routes, or a bucket that takes it directly) — the caller then uploads it whole."""
    body = {"sha256": cut.sha256, "blocks": [[block.sha256, block.size] for block in cut.blocks]}
    sent: set[str] = set()
    for _attempt in range(3):
        try:
            answer = backend._json("PUT", backend._path("recipe", key), key, "cannot store the blocks of", json=body)
        except StorageError as exc:
            if no_route(exc):
                backend.forget_block_routes()
                return False
            raise
        missing = answer.get("missing")
        if not isinstance(missing, list) or not all(isinstance(sha256, str) for sha256 in missing):
            raise PermanentStorageError(f"the hub's answer to the blocks of {key!r} is malformed", key=key)
        if not missing:
            if answer.get("sha256") != cut.sha256:
                raise PermanentStorageError(f"the hub stored {key!r} with another sha256", key=key)
            if progress is not None:
                progress(cut.size - sum(block.size for block in cut.blocks if block.sha256 in sent))
            return True
        if answer.get("sendWhole") is True:
            return False
        wanted = set(missing) - sent
        if not wanted:  # sent already, and missing again: the file changed while it was read, or the hub lost them
            raise TransientStorageError(f"the hub still lacks blocks of {key!r} after they were sent", key=key)
        _send_blocks(backend, key, file, [block for block in _unique(cut.blocks) if block.sha256 in wanted], progress)
        sent |= wanted
    raise TransientStorageError(f"the blocks of {key!r} did not all reach the hub", key=key)


def _unique(blocks: list[Block]) -> Iterator[Block]:
    seen: set[str] = set()
    for block in blocks:
        if block.sha256 not in seen:
            seen.add(block.sha256)
            yield block


def _send_blocks(
    backend: HubBackend, key: str, file: IO[bytes], blocks: list[Block], progress: Progress | None
) -> None:
    """``blocks/`` requests of up to :data:`SEND_BATCH` bytes, each block framed by its 4-byte length."""
    batch: list[bytes] = []
    size = 0
    for number, block in enumerate(blocks):
        file.seek(block.offset)
        data = file.read(block.size)
        batch.append(len(data).to_bytes(4, "big") + data)
        size += len(data)
        if size >= SEND_BATCH or number == len(blocks) - 1:
            body = b"".join(batch)
            headers = {"Content-Type": "application/octet-stream"}
            backend._json("PUT", backend._path("blocks", key), key, "cannot send blocks of", data=body,
                          headers=headers)  # fmt: skip
            if progress is not None:
                progress(size)
            batch, size = [], 0


# -- get ----------------------------------------------------------------------------------------------------------


def read_recipe(backend: HubBackend, key: str) -> tuple[str, int, list[tuple[str, int]]] | None:
    """``(sha256, size, [(block sha256, size), …])`` of ``key``'s content; None when it is stored whole or the
    hub has no block routes."""
    try:
        answer = backend._json("GET", backend._path("recipe", key), key, "cannot read the blocks of")
    except ObjectNotFound as exc:
        if no_route(exc):
            backend.forget_block_routes()
            return None
        raise
    sha256, size, listed = answer.get("sha256"), answer.get("size"), answer.get("blocks")
    if listed is None:
        return None
    blocks = [(pair[0], pair[1]) for pair in listed if _valid_pair(pair)] if isinstance(listed, list) else []
    if (not isinstance(sha256, str) or not isinstance(size, int) or not blocks or len(blocks) != len(listed)
            or sum(block_size for _sha, block_size in blocks) != size):  # fmt: skip
        raise PermanentStorageError(f"the hub's blocks of {key!r} are malformed", key=key)
    return sha256, size, blocks


def _valid_pair(pair: Any) -> bool:
    return (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and len(pair[0]) == 64
            and set(pair[0]) <= SHA256_HEX and isinstance(pair[1], int) and 0 < pair[1] <= 4 * LARGEST)  # fmt: skip


def get_by_blocks(
    backend: HubBackend, key: str, local_path: PathLike, basis: str, progress: Progress | None, fsync: bool
) -> str | None:
    """Write ``key`` to ``local_path`` from the blocks ``basis`` shares with it and the others fetched, and return
    its sha256; None (nothing written) when the content is stored whole. The written file is checked against the
    whole sha256 before its rename (else :class:`TransientStorageError`, nothing written)."""
    recipe = read_recipe(backend, key)
    if recipe is None:
        return None
    sha256, size, blocks = recipe
    with open(basis, "rb") as source:
        have = {block.sha256: block for block in cut_file(source, whole=False).blocks}
        with atomic_local_file(local_path, fsync=fsync) as out:
            digest = hashlib.sha256()
            for local, start, run in _runs(blocks, have):
                if local:
                    for block in run:
                        source.seek(have[block].offset)
                        data = source.read(have[block].size)
                        out.write(data)
                        digest.update(data)
                        if progress is not None:
                            progress(len(data))
                else:
                    length = sum(block_size for _block, block_size in run)
                    _fetch_range(backend, key, sha256, start, length, out, digest, progress)
            if out.tell() != size or digest.hexdigest() != sha256:
                found = digest.hexdigest()
                raise TransientStorageError(
                    f"{key!r} rebuilt from {basis} and the hub has sha256 {found}, not {sha256}; nothing was written",
                    key=key,
                )
    return sha256


def _runs(blocks: list[tuple[str, int]], have: dict[str, Block]) -> Iterator[tuple[bool, int, list[Any]]]:
    """``(from the basis?, offset, blocks)`` of each run of blocks the basis has, or lacks, in order; a local run
    lists block sha256s, a missing run ``(sha256, size)`` pairs."""
    offset, run_start, local = 0, 0, None
    run: list[Any] = []
    for block, block_size in blocks:
        here = block in have and have[block].size == block_size
        if run and here != local:
            yield bool(local), run_start, run
            run, run_start = [], offset
        local = here
        run.append(block if here else (block, block_size))
        offset += block_size
    if run:
        yield bool(local), run_start, run


def _fetch_range(
    backend: HubBackend, key: str, sha256: str, start: int, length: int, out: IO[bytes], digest: Any,
    progress: Progress | None,
) -> None:  # fmt: skip
    """Bytes ``start`` to ``start + length`` of ``key`` (whose content must still be ``sha256``) into ``out``."""
    from oaiod.storage.hub.backend import BLOCK, translate_remote_errors

    headers = {"Range": f"bytes={start}-{start + length - 1}"}
    received = 0
    with translate_remote_errors(key, "cannot download blocks of"):
        response = backend.http.get(backend._path("download", key), stream=True, retry=NO_RETRY, headers=headers)
        if response.headers.get("X-Oaiod-Sha256", sha256) != sha256 or response.status_code not in (200, 206):
            response.close()
            raise TransientStorageError(f"{key!r} changed on the hub during the download", key=key)
        skip = start if response.status_code == 200 else 0  # a hub that answered the whole content
        for chunk in iter_bytes(response, BLOCK):
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
            chunk = chunk[: length - received]
            if not chunk:
                continue
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if progress is not None:
                progress(len(chunk))
    if received != length:
        raise TransientStorageError(f"the hub sent {received} of {length} bytes of {key!r} from {start}", key=key)
