"""Contents stored as their blocks (*recipes*): a new version of a large file costs its changed blocks only.

A client that cut a large file into content-defined blocks (:mod:`oaiod.storage.hub.blocks`) stores it block by
block (``docs/hub-api.md``, "Block transfer"): it names the blocks (``recipe/``), sends those the hub answers as
missing (``blocks/``), and names them again; the hub then checks that the blocks make up the announced sha256 and
points the name at that content. Guarantees:

- A recipe'd content is stored as its blocks only: ``blob_blocks`` lists them in order, each an ordinary content
  of the :class:`~oaiod.hub.blobcontent.ContentStore`. :class:`RecipeContent` wraps the content store so every
  reader (a download, ``Range``, get-many, a copy, a migration) sees the whole content, assembled on demand in
  bounded memory; such a content has no local file and no pre-signed URL: the hub streams it.
- Deduplication as rights allow: a recipe may use, without sending it, only a block of a recipe whose content a
  name *in the same place* points at (the same oaio id, or the same user's private scope), and the blocks this
  user sent for that place. Nobody learns or claims by hash what they could not read: an unknown block is
  "missing" whoever holds it, and the whole sha256 is always recomputed from the blocks before the name commits
  (a recipe cannot name content it does not make up): from the blocks as they arrive where they come in the
  recipe's order (:class:`RunningHash`), the rest read back at the commit.
- Blocks sent wait in ``<data_dir>/blobs/blocks-staged/<user and place>/`` until a recipe uses them (then they
  move into the content store) or for a day (the sweep removes them).
- A block is removed only when no name and no recipe points at it (:meth:`BlobStore._remove` follows a removed
  recipe to its blocks).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from oaiod.hub.blobaccess import Access, check_access
from oaiod.hub.blobcontent import ContentMissing, ContentStore, DirectParts, DirectUrl
from oaiod.hub.db import Blob, BlobBlock
from oaiod.hub.errors import BadRequest, StoreUnavailable
from oaiod.hub.service import Actor
from oaiod.storage.fsops import start_writeback

if TYPE_CHECKING:
    from oaiod.hub.blobstore import BlobInfo, BlobStore

log = logging.getLogger("oaiod.hub.blobs")

MAX_BLOCK = 4 * 1024 * 1024  #: largest block the hub takes
MAX_BLOCKS = 100_000  #: blocks in one recipe (a 25 GiB file at 256 KiB a block)
STAGED_LIFETIME = 24 * 3600.0  #: seconds a sent block waits for a recipe that uses it
READ_BLOCK = 1024 * 1024
BATCH = 500
RUNNING_HASHES = 8  #: recipes whose whole sha256 is computed while their blocks arrive (the oldest makes room)


@dataclass(frozen=True, slots=True)
class RecipeBlock:
    """Block ``block`` (a content's sha256) holds bytes ``offset`` to ``offset + size`` of the whole."""

    block: str
    offset: int
    size: int


def recipe_of(db: Session, sha256: str) -> list[RecipeBlock] | None:
    """The blocks of the content ``sha256`` in order; None when it is not stored as blocks."""
    rows = db.execute(
        sa.select(BlobBlock.block, BlobBlock.offset, BlobBlock.size)
        .where(BlobBlock.content == sha256)
        .order_by(BlobBlock.seq)
    ).all()
    return [RecipeBlock(block, offset, size) for block, offset, size in rows] or None


def _batches(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), BATCH):
        yield ordered[start : start + BATCH]


def with_recipe(db: Session, sha256s: Iterable[str]) -> set[str]:
    """The contents among ``sha256s`` stored as blocks."""
    found: set[str] = set()
    for batch in _batches(sha256s):
        found.update(db.scalars(sa.select(BlobBlock.content).where(BlobBlock.content.in_(batch)).distinct()))
    return found


def used_as_blocks(db: Session, sha256s: Iterable[str]) -> set[str]:
    """The contents among ``sha256s`` that a recipe uses as a block."""
    found: set[str] = set()
    for batch in _batches(sha256s):
        found.update(db.scalars(sa.select(BlobBlock.block).where(BlobBlock.block.in_(batch)).distinct()))
    return found


def drop_recipes(db: Session, sha256s: Iterable[str]) -> set[str]:
    """Forget the recipes of these contents (their content is being removed); the blocks they used."""
    blocks: set[str] = set()
    for batch in _batches(sha256s):
        blocks.update(db.scalars(sa.select(BlobBlock.block).where(BlobBlock.content.in_(batch)).distinct()))
        db.execute(sa.delete(BlobBlock).where(BlobBlock.content.in_(batch)))
    return blocks


# -- reading ------------------------------------------------------------------------------------------------------


class RecipeContent(ContentStore):
    """The blob store's content store: ``inner`` for whole contents and blocks, plus every recipe'd content,
    assembled from its blocks when read. Writing, removing and direct uploads go to ``inner`` unchanged (a
    recipe's rows are the blob store's business)."""

    def __init__(self, inner: ContentStore, sessions: sessionmaker[Session]) -> None:
        self.inner = inner
        self.sessions = sessions
        self.kind = inner.kind

    def recipe(self, sha256: str) -> list[RecipeBlock] | None:
        with self.sessions() as db:
            return recipe_of(db, sha256)

    def _with_recipe(self, sha256s: Sequence[str]) -> set[str]:
        with self.sessions() as db:
            return with_recipe(db, sha256s)

    def describe(self) -> str:
        return self.inner.describe()

    def exists(self, sha256: str) -> bool:
        return self.exists_many([sha256])[0]

    def exists_many(self, sha256s: Sequence[str]) -> list[bool]:
        recipes = self._with_recipe(sha256s) if sha256s else set()
        rest = [sha256 for sha256 in sha256s if sha256 not in recipes]
        stored = dict(zip(rest, self.inner.exists_many(rest), strict=True))
        return [sha256 in recipes or stored[sha256] for sha256 in sha256s]

    def size(self, sha256: str) -> int | None:
        blocks = self.recipe(sha256)
        if blocks is None:
            return self.inner.size(sha256)
        return blocks[-1].offset + blocks[-1].size

    def open(self, sha256: str, start: int = 0) -> BinaryIO:
        if self.inner.local_path(sha256) is not None:  # a folder store: its file, when it has one, is the content
            with contextlib.suppress(ContentMissing):  # (no recipe query per file: get-many opens thousands)
                return self.inner.open(sha256, start)
        blocks = self.recipe(sha256)
        if blocks is None:
            return self.inner.open(sha256, start)
        reader = io.BufferedReader(_Assembled(self.inner, sha256, blocks, start), READ_BLOCK)
        return cast(BinaryIO, reader)

    def local_path(self, sha256: str) -> Path | None:
        path = self.inner.local_path(sha256)
        if path is None or not path.exists():
            return None  # stored as blocks (held content is not removed meanwhile): the hub streams it via open()
        return path

    def download_url(self, sha256: str, size: int) -> DirectUrl | None:
        if self._with_recipe([sha256]):
            return None  # assembled by the hub (per-block URLs would need a client that knows recipes)
        return self.inner.download_url(sha256, size)

    # the rest is the inner store's
    def place(self, staged: Sequence[tuple[str, Path]]) -> None:
        self.inner.place(staged)

    def remove(self, sha256: str) -> None:
        self.inner.remove(sha256)

    def remove_many(self, sha256s: Sequence[str]) -> None:
        self.inner.remove_many(sha256s)

    def iter_content(self) -> Iterator[str]:
        return self.inner.iter_content()

    def check(self) -> None:
        self.inner.check()

    def direct(self) -> bool:
        return self.inner.direct()

    def direct_upload(self, stage: str, size: int) -> DirectParts | None:
        return self.inner.direct_upload(stage, size)

    def direct_received(self, stage: str) -> int | None:
        return self.inner.direct_received(stage)

    def finish_direct(self, stage: str, sha256: str, size: int) -> None:
        self.inner.finish_direct(stage, sha256, size)

    def drop_direct(self, stages: Sequence[str]) -> None:
        self.inner.drop_direct(stages)

    def stray_direct(self, known: set[str], older_than: float) -> int:
        return self.inner.stray_direct(known, older_than)

    def close(self) -> None:
        self.inner.close()


class _Assembled(io.RawIOBase):
    """A recipe'd content from byte ``start`` on, read block after block from ``store`` (one block open at a
    time). A block shorter than the recipe says is an error, never silently short content."""

    def __init__(self, store: ContentStore, sha256: str, blocks: list[RecipeBlock], start: int) -> None:
        super().__init__()
        self._store, self._sha256, self._blocks = store, sha256, blocks
        self._number, self._skip = len(blocks), 0  # the next block to open, and its bytes before ``start``
        if start < blocks[-1].offset + blocks[-1].size:
            self._number = bisect_right([block.offset for block in blocks], start) - 1
            self._skip = start - blocks[self._number].offset
        self._file: BinaryIO | None = None
        self._left = 0  # bytes of the open block still to read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._left == 0:
            if not self._next_block():
                return 0
        assert self._file is not None
        wanted = view[: min(len(view), self._left)]
        readinto = getattr(self._file, "readinto", None)  # a local file: one copy less
        if readinto is not None:
            count = readinto(wanted) or 0
        else:
            data = self._file.read(len(wanted))
            count = len(data)
            wanted[:count] = data
        if not count:
            raise OSError(f"block {self._blocks[self._number - 1].block} of {self._sha256} ended early")
        self._left -= count
        return int(count)

    def _next_block(self) -> bool:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._number >= len(self._blocks):
            return False
        block = self._blocks[self._number]
        self._file = self._store.open(block.block, self._skip)
        self._left, self._skip = block.size - self._skip, 0
        self._number += 1
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


# -- writing ------------------------------------------------------------------------------------------------------


def _place_key(actor: Actor, access: Access) -> str:
    text = f"{actor.username}\n{access.owner}\n{access.scope}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class RunningHash:
    """The whole sha256 of a recipe, computed while its blocks arrive, so its commit need not read them all back.

    Fed only with bytes the hub itself hashed to a block's name — a block just received, or a file staged under
    that name — in the recipe's order, each checked against the size the recipe gives: exactly the bytes the
    commit's check would read back. It waits at the first block it cannot feed (not sent yet, sent by a request
    still on its way, a size that does not match, or one the place already had); the commit reads that block and
    the rest back (:meth:`BlockUploads._verify`)."""

    def __init__(self, blocks: list[tuple[str, int]]) -> None:
        self.blocks = blocks
        self.digest = hashlib.sha256()
        self.done = 0  #: blocks fed, from the first
        self.lock = threading.Lock()
        self.taken = False  #: its commit has it: fed no more (a batch staged meanwhile must not add to the digest)

    def advance(self, folder: Path, received: dict[str, bytes]) -> None:
        """Feed the next blocks: from ``received`` (staged just now in ``folder``), else from their staged files."""
        with self.lock:
            while not self.taken and self.done < len(self.blocks):
                block, size = self.blocks[self.done]
                data = received.get(block)
                if data is None:
                    try:
                        data = (folder / block).read_bytes()  # another request's, or a repeat of an earlier one
                    except OSError:
                        return
                if len(data) != size:
                    return
                self.digest.update(data)
                self.done += 1


class BlockUploads:
    """Blocks sent for a place, and recipes committed from them (thread-safe; call from a worker thread)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.root = store.root / "blocks-staged"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._running: dict[tuple[Path, str], RunningHash] = {}  # (stage folder, sha256) -> hash so far; oldest first
        self._running_lock = threading.Lock()

    def stage_folder(self, actor: Actor, name: str) -> Path:
        """Where ``actor``'s blocks for ``name``'s place wait (made if absent); 404/403 without write access."""
        with self.store.service.sessions() as db:
            access = check_access(db, actor, name, write=True)
        folder = self.root / _place_key(actor, access)
        folder.mkdir(exist_ok=True, mode=0o700)
        return folder

    def stage_many(self, folder: Path, blocks: Sequence[bytes]) -> list[str]:
        """:meth:`stage` each of ``blocks`` in order, and feed them to the running hashes of the recipes waiting for
        blocks in ``folder``; their sha256s."""
        names = [self.stage(folder, data) for data in blocks]
        with self._running_lock:
            waiting = [running for (place, _sha256), running in self._running.items() if place == folder]
        if waiting:
            received = dict(zip(names, blocks, strict=True))
            for running in waiting:
                running.advance(folder, received)
        return names

    def _expect(self, folder: Path, sha256: str, blocks: list[tuple[str, int]]) -> None:
        """Hash the recipe ``sha256`` of ``blocks`` while they arrive in ``folder`` (:class:`RunningHash`)."""
        with self._running_lock:
            running = self._running.get((folder, sha256))
            if running is not None and running.blocks == blocks:
                return  # asked again for blocks still missing: keep what was hashed
            self._running.pop((folder, sha256), None)
            while len(self._running) >= RUNNING_HASHES:
                del self._running[next(iter(self._running))]
            self._running[(folder, sha256)] = RunningHash(blocks)

    def _take_running(self, folder: Path, sha256: str, blocks: list[tuple[str, int]]) -> RunningHash:
        """The running hash of this recipe, no longer fed (a fresh one when there is none for these blocks)."""
        with self._running_lock:
            running = self._running.pop((folder, sha256), None)
        if running is None or running.blocks != blocks:
            return RunningHash(blocks)
        with running.lock:  # a feed still under way ends first; a later one finds it taken
            running.taken = True
            return running

    @staticmethod
    def stage(folder: Path, data: bytes) -> str:
        """Keep one received block under its sha256 (computed here: a client cannot name a block wrongly)."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = folder / sha256
        folder.mkdir(exist_ok=True, mode=0o700)  # the sweep removes folders left empty for a day
        if target.exists():
            os.utime(target)
            return sha256
        temp = folder / f".{sha256}.{os.getpid()}.{time.monotonic_ns()}"
        with open(temp, "wb") as file:
            file.write(data)
            start_writeback(file.fileno())  # the recipe's syncfs then finds the blocks on disk, not all still to write
        os.replace(temp, target)
        return sha256

    def visible(self, db: Session, access: Access, blocks: Iterable[str]) -> set[str]:
        """The blocks among ``blocks`` that a recipe of content named in ``access``'s place uses."""
        found: set[str] = set()
        for batch in _batches(blocks):
            query = (
                sa.select(BlobBlock.block)
                .join(Blob, Blob.sha256 == BlobBlock.content)
                .where(Blob.owner == access.owner, Blob.scope == access.scope, BlobBlock.block.in_(batch))
                .distinct()
            )
            found.update(db.scalars(query))
        return found

    def put_recipe(
        self, actor: Actor, name: str, sha256: str, blocks: list[tuple[str, int]], expires: str | None
    ) -> tuple[list[str], BlobInfo | None]:
        """Point ``name`` at the concatenation of ``blocks`` (``(sha256, size)`` each), which must have sha256
        ``sha256``: ``([], info)`` when done, ``(missing blocks, None)`` when some must be sent first."""
        from oaiod.hub.blobuploads import content_gone

        wanted = sorted({block for block, _size in blocks})
        with self.store.service.sessions() as db:
            access = check_access(db, actor, name, write=True)
            visible = self.visible(db, access, wanted)
        folder = self.root / _place_key(actor, access)
        staged = {block for block in wanted if block not in visible and (folder / block).exists()}
        missing = [block for block in wanted if block not in visible and block not in staged]
        if missing:
            self._expect(folder, sha256, blocks)
            return missing, None
        rows, offset = [], 0
        for seq, (block, size) in enumerate(blocks):
            rows.append({"content": sha256, "seq": seq, "block": block, "offset": offset, "size": size})
            offset += size
        with self.store.holding([*wanted, sha256]):
            self._place_staged(folder, sorted(staged))
            self._verify(sha256, rows, self._take_running(folder, sha256, blocks))
            with self.store.changing() as (db, garbage):
                access = check_access(db, actor, name, write=True)
                garbage.content.update(wanted)  # removed again should nothing use them after this change
                self.store.lock_contents(db, [*wanted, sha256])  # all at once, in order: one recipe row set
                self.store.confirm_contents(db, wanted, content_gone)
                if not with_recipe(db, [sha256]):
                    db.execute(sa.insert(BlobBlock), rows)
                blob = self.store.put_name(db, garbage, access.owner, access.scope, name, sha256, offset,
                                           actor.username, expires)  # fmt: skip
                info = blob.sha256, blob.size, blob.created
        for block in staged:
            with contextlib.suppress(FileNotFoundError):
                (folder / block).unlink()
        from oaiod.hub.blobstore import BlobInfo

        return [], BlobInfo(name, info[1], info[0], info[2], expires)

    def _place_staged(self, folder: Path, blocks: list[str]) -> None:
        """Move staged blocks into the content store (through links: a recipe committed at the same time from the
        same blocks finds them still staged)."""
        links: list[tuple[str, Path]] = []
        try:
            for block in blocks:
                link = folder / f".place-{block}.{os.getpid()}.{time.monotonic_ns()}"
                try:
                    os.link(folder / block, link)
                except FileNotFoundError:
                    if not self.store.content.exists(block):  # a concurrent recipe placed it, or the sweep took it
                        raise StoreUnavailable(f"block {block} went while the recipe was stored; retry") from None
                    continue
                links.append((block, link))
            self.store.content.place(links)
        finally:
            for _block, link in links:
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()

    def _verify(self, sha256: str, rows: list[dict[str, Any]], running: RunningHash) -> None:
        """Check that the blocks have the sizes given and make up ``sha256``: those ``running`` hashed while they
        arrived, and the rest read back from the content store."""
        digest = running.digest
        content = self.store.content
        whole = content.inner if isinstance(content, RecipeContent) else content  # a block is never a recipe: no
        for row in rows[running.done :]:  # recipe lookup per block (a query each was most of this check's time)
            size = 0
            try:
                with contextlib.closing(whole.open(row["block"])) as file:
                    while data := file.read(READ_BLOCK):
                        digest.update(data)
                        size += len(data)
            except ContentMissing:
                raise StoreUnavailable(f"block {row['block']} went while the recipe was stored; retry") from None
            if size != row["size"]:
                raise BadRequest(f"block {row['seq']} ({row['block']}) has {size} bytes, not {row['size']}")
        if digest.hexdigest() != sha256:
            raise BadRequest(f"the blocks make up sha256 {digest.hexdigest()}, not {sha256}")

    def recipe(self, actor: Actor, name: str) -> tuple[BlobInfo, list[RecipeBlock] | None]:
        """The metadata of ``name`` and its content's blocks (None: stored whole)."""
        info = self.store.metadata(actor, name)
        with self.store.service.sessions() as db:
            return info, recipe_of(db, info.sha256)

    def sweep(self) -> int:
        """Remove blocks staged more than :data:`STAGED_LIFETIME` ago that no recipe used; how many."""
        horizon, count = time.time() - STAGED_LIFETIME, 0
        for folder in self.root.iterdir():
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for path in folder.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        if path.stat().st_mtime < horizon:
                            path.unlink()
                            count += 1
                if folder.stat().st_mtime < horizon:
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only when empty
        return count
