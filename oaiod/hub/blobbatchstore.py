"""Batch transfers of small blobs: many names stored (``put-many/``) or read (``get-many/``) in one request.

No HTTP here (:mod:`oaiod.hub.blobbatch` has the routes and the wire format). Each item is stored and read
exactly as the single-file routes store and read one (:mod:`oaiod.hub.blobuploads`, ``download/``): the same
names, access rules (:mod:`oaiod.hub.blobaccess`), content stored once per sha256, published objects never
changed in place. What a batch changes is the cost: one transaction and two filesystem syncs per batch instead
of two fsyncs and a transaction per file. Guarantees:

- put: a :class:`BatchReceiver` stages each item's bytes in its own file under ``blobs/uploads/batch-…``,
  hashing them as they arrive; only a complete body is committed — a short or long one is refused and nothing
  is stored. :meth:`BatchStore.commit` then checks each item (sha256 not as announced: 400; the caller may not
  read the name: 404; may read but not write: 403 — per item, the others go on), has the content store place the
  accepted items' content durably (content already stored is not written again; it stays held until the names
  commit), then checks access again and points every accepted name at its content in one transaction. A crash
  at any point leaves either no name or a name on durable content; staged files left behind are swept like
  abandoned uploads.
- Unfinished single-file uploads of the same names are left alone (one finished later replaces the name, as a
  later put would).
- get: :meth:`BatchStore.open_many` checks every name as ``download/`` checks one (missing, expired or not
  readable: 404), in one database session, and holds the content of the names it answers until the answer
  ended (:meth:`BlobStore.release_download`), so a concurrent delete or replace never cuts an answer short.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from oaiod.hub.blobaccess import Access, check_access
from oaiod.hub.blobstore import BlobInfo, BlobStore, NameWrite, sha256_text
from oaiod.hub.blobuploads import content_gone
from oaiod.hub.errors import BadRequest, Forbidden, HubError, InsufficientStorage, NotFound, TooLarge
from oaiod.hub.service import Actor
from oaiod.model import now_stamp

log = logging.getLogger("oaiod.hub.blobs")

#: with direct transfers, items above this are answered 413 (fetch alone): a single download then goes to the
#: bucket on a pre-signed URL instead of through the hub (clients put files above 4 MiB alone, too)
DIRECT_ALONE = 4 * 1024 * 1024
STAGED_PREFIX = "batch-"  #: staged files in ``blobs/uploads/``; never an upload's name (those are hex)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One announced item of a ``put-many/`` body: its name, and the size and sha256 its bytes must have."""

    name: str
    size: int
    sha256: str


@dataclass(slots=True)
class Outgoing:
    """One item of a ``get-many/`` answer: content to send (``info``; ``held`` once it is held), or ``error``."""

    name: str
    info: BlobInfo | None = None
    held: bool = False
    error: HubError | None = None


def item_error(name: str, exc: HubError) -> dict[str, Any]:
    """The per-item answer of a refused item: its name, and the status and JSON the single-file route would
    answer."""
    return {"name": name, "status": exc.status, **exc.body()}


class BatchReceiver:
    """Stages the data part of one ``put-many/`` body — each item's bytes, in the announced order and sizes — in
    a file per item, hashed on the way (thread methods; not thread-safe: one request feeds it)."""

    def __init__(self, store: BlobStore, items: Sequence[BatchItem]) -> None:
        self.items = list(items)
        self.digests: list[str] = []
        self.paths: list[Path] = []
        self._folder = store.upload_root
        self._token = secrets.token_hex(8)
        self._file: IO[bytes] | None = None
        self._hash = hashlib.sha256()
        self._left = 0
        self._advance()

    @property
    def done(self) -> bool:
        return len(self.digests) == len(self.items)

    def feed(self, data: bytes | bytearray) -> None:
        """The next bytes of the body; 400 when they go beyond the last item's announced size."""
        view = memoryview(data)
        while view:
            if self.done:
                raise BadRequest("the body holds more bytes than the items announce")
            part, view = view[: self._left], view[self._left :]
            self._write(part)
            self._left -= len(part)
            if self._left == 0:
                self._close_item()
                self._advance()

    def finish(self) -> None:
        """The body ended: 400 unless every item's bytes arrived."""
        if not self.done:
            raise BadRequest(
                f"the body ends inside item {len(self.digests)} ({self.items[len(self.digests)].name[:200]!r}) "
                f"of {len(self.items)}: each item's bytes follow the item list, in its order and sizes"
            )

    def discard(self) -> None:
        """Remove every staged file that is still here (call once the request ended, however it ended)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _advance(self) -> None:
        """Start the next item; items of 0 bytes are complete at once."""
        while not self.done:
            self._left = self.items[len(self.digests)].size
            if self._left:
                return
            self._open()
            self._close_item()

    def _open(self) -> None:
        path = self._folder / f"{STAGED_PREFIX}{self._token}-{len(self.digests)}"
        self.paths.append(path)
        self._file = _disk_full_as_507(lambda: open(path, "xb"))  # noqa: SIM115 - closed by _close_item/discard
        self._hash = hashlib.sha256()

    def _write(self, part: memoryview) -> None:
        if self._file is None:
            self._open()
        file = self._file
        assert file is not None
        _disk_full_as_507(lambda: file.write(part))
        self._hash.update(part)

    def _close_item(self) -> None:
        assert self._file is not None
        _disk_full_as_507(self._file.close)
        self._file = None
        self.digests.append(self._hash.hexdigest())


def _disk_full_as_507(call: Any) -> Any:
    try:
        return call()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("the hub's disk is full") from None
        raise


class BatchStore:
    """The batch routes' operations on one :class:`BlobStore` (thread-safe: routes call it from the thread pool)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def receiver(self, items: Sequence[BatchItem]) -> BatchReceiver:
        return BatchReceiver(self.store, items)

    # -- put ------------------------------------------------------------------------------------------------------

    def commit(self, actor: Actor, receiver: BatchReceiver) -> list[dict[str, Any]]:
        """Store every item of a fully received batch whose bytes match and whose name the actor may write; one
        answer per item, in order: the object's metadata, or ``{status, error, reason}``. The caller discards the
        receiver afterwards (staged files not moved into the content store go then)."""
        receiver.finish()
        items = receiver.items
        answers: list[dict[str, Any] | None] = [None] * len(items)
        for number, (item, digest) in enumerate(zip(items, receiver.digests, strict=True)):
            if digest != item.sha256:
                reason = f"the data of {item.name[:200]!r} has sha256 {digest}, not {item.sha256}; not stored"
                answers[number] = item_error(item.name, BadRequest(reason))
        if not any(answer is None for answer in answers):
            return answers  # type: ignore[return-value]
        with self.store.service.sessions() as db:  # access checked again in the transaction that names them
            writable = [number for number, _located in self._writable(db, actor, items, list(answers))]
        staged = [(items[number].sha256, receiver.paths[number]) for number in writable]
        with self.store.holding([sha256 for sha256, _path in staged]):  # nothing removes them before the commit
            self.store.content.place(staged)
            with self.store.changing() as (db, garbage):
                garbage.content.update(sha256 for sha256, _path in staged)  # removed again unless named
                self.store.confirm_contents(db, [sha256 for sha256, _path in staged], content_gone)
                accepted = self._writable(db, actor, items, answers)
                writes = [
                    NameWrite(located, items[n].name, items[n].sha256, items[n].size, None) for n, located in accepted
                ]
                created = self.store.write_names(db, garbage, writes, actor.username)
        for number, _located in accepted:
            item = items[number]
            answers[number] = BlobInfo(item.name, item.size, item.sha256, created, None).as_dict()
        log.debug("blob batch of %s: %d of %d items stored", actor.username, len(accepted), len(items))
        return answers  # type: ignore[return-value]

    @staticmethod
    def _writable(
        db: Session, actor: Actor, items: list[BatchItem], answers: list[dict[str, Any] | None]
    ) -> list[tuple[int, tuple[str, str, str]]]:
        """``(number, (owner, name_hash, scope))`` of the items still unanswered that the actor may write (access
        checked once per scope: it depends on the scope alone); the others get their 404/403 in ``answers``."""
        memo: dict[str, Access | HubError] = {}
        accepted: list[tuple[int, tuple[str, str, str]]] = []
        for number, item in enumerate(items):
            if answers[number] is not None:
                continue
            scope = item.name.split("/", 1)[0]
            if scope not in memo:
                try:
                    memo[scope] = check_access(db, actor, item.name, write=True)
                except (NotFound, Forbidden) as exc:
                    memo[scope] = exc
            access = memo[scope]
            if isinstance(access, NotFound):
                missing = NotFound(f"no blob {item.name!r} that {actor.username!r} may read")
                answers[number] = item_error(item.name, missing)
                continue
            if isinstance(access, HubError):
                answers[number] = item_error(item.name, access)  # 403: the reason names the scope
                continue
            accepted.append((number, (access.owner, sha256_text(item.name), access.scope)))
        return accepted

    # -- get ------------------------------------------------------------------------------------------------------

    def open_many(self, actor: Actor, names: list[str], budget: int) -> list[Outgoing]:
        """The answer to a ``get-many/`` of ``names``: for a prefix of them, in order, held content or an error.

        The prefix ends before the first readable item whose bytes would take the answer beyond ``budget`` bytes
        (the client asks again for the rest); an item larger than ``budget`` on its own is answered 413 with its
        size instead, so every answer makes progress — and so is one above :data:`DIRECT_ALONE` when the content
        store hands out direct URLs (the client's single download then bypasses the hub). Release the held content
        of every ``held`` item (:meth:`BlobStore.release_download`) when the answer ended."""
        planned = self._plan(actor, names, budget)
        wanted = [item for item in planned if item.info is not None]
        held = self.store.hold([item.info.sha256 for item in wanted], trust_names=True)  # type: ignore[union-attr]
        for item, ok in zip(wanted, held, strict=True):
            item.held = ok
            if ok:
                continue
            try:  # its content went since the lookup (a concurrent delete or replace): look the name up again
                item.info, item.held = self.store.open_download(actor, item.name), True
            except NotFound as exc:
                item.info, item.error = None, exc
        return planned

    def _plan(self, actor: Actor, names: list[str], budget: int) -> list[Outgoing]:
        now, total = now_stamp(), 0
        direct = self.store.content.direct()
        planned: list[Outgoing] = []
        with self.store.service.sessions() as db:
            memo: dict[str, Access | HubError] = {}
            located: list[tuple[str, str, str] | HubError] = []
            for name in names:
                scope = name.split("/", 1)[0]
                if scope not in memo:
                    try:
                        memo[scope] = check_access(db, actor, name)
                    except NotFound as exc:
                        memo[scope] = exc
                access = memo[scope]
                located.append(access if isinstance(access, HubError) else
                               (access.owner, sha256_text(name), access.scope))  # fmt: skip
            rows = self.store.blob_rows(db, [place for place in located if not isinstance(place, HubError)])
        for name, place in zip(names, located, strict=True):
            row = None if isinstance(place, HubError) else rows.get(place[:2])
            if row is None or (row.expires is not None and row.expires < now):
                planned.append(Outgoing(name, error=NotFound(f"no blob {name!r} that {actor.username!r} may read")))
                continue
            info = BlobInfo(name, row.size, row.sha256, row.created, row.expires)
            if row.size > budget or (direct and row.size > DIRECT_ALONE):
                limit = min(budget, DIRECT_ALONE) if direct else budget
                reason = f"{name[:200]!r} has {row.size} bytes, more than a batch answer's {limit}; download it alone"
                planned.append(Outgoing(name, error=TooLarge(reason, size=row.size, sha256=row.sha256)))
                continue
            if total + row.size > budget:
                break
            total += row.size
            planned.append(Outgoing(name, info=info))
        return planned
