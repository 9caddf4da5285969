"""The hub's blob store: named, immutable blobs with the object-service life cycle.

No HTTP here (:mod:`oaiod.hub.blobs` and :mod:`oaiod.hub.blobbatch` have the routes). Names, rights and uploads
live in the database; the bytes in a :class:`~oaiod.hub.blobcontent.ContentStore` (the data folder's
``blobs/sha256/`` or an S3 bucket). Guarantees:

- Content is stored once per sha256; a name points at content. A server-side copy only adds a name (a prefix copy
  adds the names of a whole folder, read and written in the database), and content
  goes when its last name goes. A batch of copies is one transaction.
- Uploads (:mod:`oaiod.hub.blobuploads`, one file resumable over many requests; :mod:`oaiod.hub.blobbatchstore`,
  many small files in one request) end in :meth:`BlobStore.put_name` / :meth:`BlobStore.write_names` under
  the lock: readers see the old object or the new one, never a partial one. A finished name may be uploaded
  again; a published object's bytes never change.
- Names change under one lock; content whose last name went is removed after the commit, and not before the
  downloads reading it end: a download that found its name reads the content fully, one that did not answers
  404. Content is *held* (a count per sha256, under the lock) by each download reading it and by each publish
  placing it before its name commits; the lock only decides which unnamed, unheld content is doomed, and the
  removal itself runs after it (a bucket call may be slow), while a hold of doomed content waits for the removal
  to end (the publish then stores it anew).
- Across hub processes on one PostgreSQL database (several workers, several machines on one bucket) the lock and
  the holds are per process, so the database decides: a removal re-checks, in a transaction holding an advisory
  lock on the content (:meth:`BlobStore.lock_contents`, one of 256 by its first byte), that no name points at it
  before removing it; a transaction that names content (a publish, a copy) takes the same lock and checks that
  the content is still stored — if another process removed it meanwhile, the publish answers 503 (the client
  sends it again) and a copy 404 (its source went). A download racing the removal of its content's last name
  on *another* process may be cut; the client retries and then gets 404, as for a deleted name.
- Deleting an object (``delete/``, ``wipe_user/``) drops every blob and unfinished upload under its id in the
  same transaction (:meth:`BlobStore.removing`, an :class:`~oaiod.hub.service.Attachment`); wiping a user drops
  their private blobs, the blobs of ids they minted and never registered, and their unfinished uploads.
- Who may read and write a name: :mod:`oaiod.hub.blobaccess`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from oaiod.hub.blobaccess import Access, blob_access, check_access, claimed_by_other
from oaiod.hub.blobcontent import ContentStore, open_content_store
from oaiod.hub.blobrecipes import BlockUploads, RecipeContent, drop_recipes, used_as_blocks
from oaiod.hub.db import Blob, BlobUpload, Object, stamp_add
from oaiod.hub.errors import Conflict, Forbidden, HubError, NotFound
from oaiod.hub.service import Actor, HubService, Removal
from oaiod.model import now_stamp

if TYPE_CHECKING:
    from _hashlib import HASH  # what hashlib.sha256() makes (no public name for its type)

log = logging.getLogger("oaiod.hub.blobs")

UPLOAD_LIFETIME = 24 * 3600.0  #: seconds an unfinished upload is kept
SWEEP_INTERVAL = 600.0  #: seconds between sweeps of expired uploads and objects
HASH_BLOCK = 4 * 1024 * 1024
BATCH = 500  #: values in one SQL ``IN (…)``
LOCK_SPACE = 0x0A10B10B  #: first key of the blob store's PostgreSQL advisory locks (the second: a content's first byte)

T = TypeVar("T")
BLOB_TABLE: sa.Table = Blob.__table__  # type: ignore[assignment]


def sha256_text(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    sha256: str
    created: str
    expires: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "created": self.created,
                "expires": self.expires}  # fmt: skip


def blob_info(row: Blob) -> BlobInfo:
    return BlobInfo(row.name, row.size, row.sha256, row.created, row.expires)


def in_batches(values: Iterable[T]) -> Iterator[list[T]]:
    """``values`` in lists of at most :data:`BATCH` (for ``IN (…)``)."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def file_size(path: Path) -> int:
    """Bytes in ``path``; 0 when it does not exist (an upload that received nothing, or was dropped meanwhile)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass
class Garbage:
    """Files a change of names may leave behind: content that may have lost its last name (checked against the
    database after the change) and the files of dropped uploads (removed only when the change committed)."""

    content: set[str] = field(default_factory=set)
    upload_files: list[Path] = field(default_factory=list)
    direct_stages: list[str] = field(default_factory=list)  #: direct uploads (in the content store) to forget


@dataclass(frozen=True, slots=True)
class NameWrite:
    """A name to point at content: where it lives (``(owner, name_hash, scope)`` from :meth:`BlobStore.locate`),
    the name, and the content's sha256, size and expiry."""

    located: tuple[str, str, str]
    name: str
    sha256: str
    size: int
    expires: str | None


class BlobStore:
    """Every blob operation of one hub (thread-safe: routes call it from the thread pool). Creating it attaches
    it to ``service``, which from then on hands it every object deletion and user wipe."""

    def __init__(self, service: HubService, content: ContentStore | None = None) -> None:
        self.service = service
        self.root = service.settings.data_dir / "blobs"
        self.upload_root = self.root / "uploads"
        for folder in (self.root, self.upload_root):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        inner = content or open_content_store(service.settings.blob_store, service.settings.data_dir)
        self.content: ContentStore = RecipeContent(inner, service.sessions)  # whole contents and recipes
        self.lock = threading.Lock()  # name changes and holds of content; never held during a transfer
        self._removed = threading.Condition(self.lock)  # notified when a removal of content ended
        self.busy: set[int] = set()  # uploads with a data/ request running
        self.hashers: dict[int, tuple[int, HASH]] = {}  # upload id -> (bytes hashed, sha256 object)
        self._readers: Counter[str] = Counter()  # content sha256 -> holds (downloads reading it, publishes placing it)
        self._unnamed_in_use: set[str] = set()  # content that lost its last name while held
        self._removing: set[str] = set()  # content doomed under the lock, being removed now
        self._last_sweep = ""
        self._cross_process = service.engine.dialect.name == "postgresql"  # SQLite: one process per database
        self.blocks = BlockUploads(self)
        service.attach(self)

    # -- paths ---------------------------------------------------------------------------------------------------

    def upload_path(self, row: BlobUpload) -> Path:
        return self.upload_root / row.upload_id_hash

    @staticmethod
    def where_name(table: Any, access: Access, name: str) -> Any:
        return sa.and_(table.owner == access.owner, table.name_hash == sha256_text(name))

    # -- changing names ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def collecting(self) -> Iterator[Garbage]:
        """Hold the lock over a change of names, then remove what it left behind: content with no name left
        (whether or not the change committed: the check reads the committed state) and, only when it committed,
        the files of the uploads it dropped."""
        garbage = Garbage()
        doomed: set[str] = set()
        stages: list[str] = []
        try:
            with self.lock:
                try:
                    yield garbage
                finally:
                    doomed = self._doom_unnamed(garbage.content)
                for path in garbage.upload_files:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                stages = garbage.direct_stages
        finally:
            self._remove(doomed)
            self._drop_direct(stages)

    @contextlib.contextmanager
    def changing(self) -> Iterator[tuple[Session, Garbage]]:
        """A transaction that changes names, under the lock, cleaned up after commit (see :meth:`collecting`)."""
        with self.collecting() as garbage, self.service.sessions.begin() as db:
            yield db, garbage

    def _doom_unnamed(self, candidates: set[str]) -> set[str]:
        """The content among ``candidates`` that no name points at and nobody holds (call under the lock, after
        commit), marked as being removed; remove it with :meth:`_remove` once the lock is released. Held content
        waits until its last hold ends (:meth:`release_download`)."""
        if not candidates:
            return set()
        named = self._named(candidates)
        doomed: set[str] = set()
        for sha256 in candidates - named:
            if self._readers[sha256]:
                self._unnamed_in_use.add(sha256)
            elif sha256 not in self._removing:
                doomed.add(sha256)
        self._removing |= doomed
        return doomed

    def _named(self, sha256s: set[str]) -> set[str]:
        """The contents among ``sha256s`` that a committed name points at, or a recipe uses as a block."""
        with self.service.sessions() as db:
            return self._referenced(db, sha256s)

    @staticmethod
    def _referenced(db: Session, sha256s: set[str]) -> set[str]:
        named: set[str] = set()
        for batch in in_batches(sorted(sha256s)):
            named.update(db.scalars(sa.select(Blob.sha256).where(Blob.sha256.in_(batch)).distinct()))
        return named | used_as_blocks(db, sha256s - named)

    def _remove(self, doomed: set[str]) -> None:
        """Remove doomed content (outside the lock), then let holds of it go on. A failed removal leaves the
        content stored without a name: logged, never the request's error (its change committed). On PostgreSQL
        the names are checked again under the contents' advisory locks (another process may name it now)."""
        if not doomed:
            return
        blocks: set[str] = set()
        try:
            with self.service.sessions.begin() as db:
                self.lock_contents(db, doomed)
                gone = doomed - self._referenced(db, doomed) if self._cross_process else doomed
                blocks = drop_recipes(db, gone)  # their blocks may have lost their last use: checked below
                self.content.remove_many(sorted(gone))
        except (HubError, OSError, sa.exc.SQLAlchemyError) as exc:
            log.warning("blob store: %d contents lost their last name but stay stored (%s): %s", len(doomed),
                        exc, ", ".join(sorted(doomed)[:5]))  # fmt: skip
        finally:
            with self.lock:
                self._removing -= doomed
                self._removed.notify_all()
        if blocks:
            with self.lock:
                freed = self._doom_unnamed(blocks)
            self._remove(freed)

    def lock_contents(self, db: Session, sha256s: Iterable[str]) -> None:
        """Take the transaction-scoped advisory locks of these contents (PostgreSQL; nothing on SQLite), in one
        order everywhere: a removal and a naming of one content in two processes run one after the other."""
        if not self._cross_process:
            return
        for bucket in sorted({int(sha256[:2], 16) for sha256 in sha256s}):
            db.execute(
                sa.text("SELECT pg_advisory_xact_lock(:space, :bucket)"), {"space": LOCK_SPACE, "bucket": bucket}
            )

    def confirm_contents(self, db: Session, sha256s: list[str], gone: Callable[[], HubError]) -> None:
        """In a transaction that names these contents: lock them and check they are still stored (another hub
        process may have removed one after its last name went); raise ``gone()`` if not. Nothing on SQLite."""
        if not self._cross_process or not sha256s:
            return
        self.lock_contents(db, sha256s)
        if not all(self.content.exists_many(sorted(set(sha256s)))):
            raise gone()

    def _drop_direct(self, stages: list[str]) -> None:
        """Forget direct uploads in the content store whose rows a committed change dropped; a failure leaves
        them to the sweep (:meth:`ContentStore.stray_direct`)."""
        if not stages:
            return
        try:
            self.content.drop_direct(stages)
        except HubError as exc:
            log.warning("blob store: %d dropped direct uploads stay in the content store until the sweep: %s",
                        len(stages), exc)  # fmt: skip

    def _hold(self, sha256s: Iterable[str]) -> None:
        """Count a hold of each content (call under the lock): nothing removes it until released. Waits while
        one of them is being removed (afterwards it is absent; a publish stores it anew)."""
        wanted = list(sha256s)
        while any(sha256 in self._removing for sha256 in wanted):
            self._removed.wait()
        for sha256 in wanted:
            self._readers[sha256] += 1

    @contextlib.contextmanager
    def holding(self, sha256s: list[str]) -> Iterator[None]:
        """Hold each content for the block: a publish places content and names it in a transaction inside it, and
        nothing removes the content between the two (released however the block ends)."""
        with self.lock:
            self._hold(sha256s)
        try:
            yield
        finally:
            for sha256 in sha256s:
                self.release_download(sha256)

    @contextlib.contextmanager
    def removing(self) -> Iterator[Callable[[Session, Removal], None]]:
        """The :class:`~oaiod.hub.service.Attachment` hook: the hub deletes objects or wipes a user, and the blob
        store drops its part in the same transaction, under its lock (see the module docstring)."""
        with self.collecting() as garbage:
            yield lambda db, removal: self.drop_removed(db, removal, garbage)

    def check_claim(self, db: Session, oaio_id: str, username: str) -> None:
        """The :class:`~oaiod.hub.service.Attachment` hook: an id under which another user uploaded files before
        registering it is theirs (a user name with ``@`` makes a minted id ambiguous); registering it is 409."""
        if claimed_by_other(db, oaio_id, username):
            raise Conflict(f"the id {oaio_id!r} is taken: another user's files are stored under it")

    def drop_removed(self, db: Session, removal: Removal, garbage: Garbage) -> None:
        """Drop the blobs and uploads under deleted objects' ids, and those of wiped users: their private ones,
        those under ids they minted and never registered, and every unfinished upload they started."""
        blobs: list[Any] = []
        uploads: list[Any] = []
        for ids in in_batches(removal.oaio_ids):
            blobs.append(sa.and_(Blob.owner == "", Blob.scope.in_(ids)))
            uploads.append(sa.and_(BlobUpload.owner == "", BlobUpload.scope.in_(ids)))
        for users in in_batches(removal.usernames):
            registered = sa.exists().where(Object.oaio_id == Blob.scope)
            blobs += [Blob.owner.in_(users), sa.and_(Blob.owner == "", Blob.creator.in_(users), ~registered)]
            uploads += [BlobUpload.owner.in_(users), BlobUpload.creator.in_(users)]
        for where in uploads:
            for upload in list(db.scalars(sa.select(BlobUpload).where(where))):
                self.drop_upload(db, upload, garbage)
        for where in blobs:
            rows = db.execute(sa.select(Blob.id, Blob.sha256).where(where)).all()
            for row_ids in in_batches(row_id for row_id, _sha256 in rows):
                db.execute(sa.delete(Blob).where(Blob.id.in_(row_ids)))
            garbage.content.update(sha256 for _row_id, sha256 in rows)
        db.flush()

    def drop_upload(self, db: Session, row: BlobUpload, garbage: Garbage) -> None:
        """Forget an unfinished upload (call under the lock); its file goes once the change committed."""
        db.delete(row)
        self.hashers.pop(row.id, None)
        self.busy.discard(row.id)  # a transfer still running writes into the removed file, and keeps no hash
        garbage.upload_files.append(self.upload_path(row))
        if self.content.direct():
            garbage.direct_stages.append(row.upload_id_hash)

    def finished(self, db: Session, access: Access, name: str) -> BlobInfo:
        blob = db.scalar(sa.select(Blob).where(self.where_name(Blob, access, name)))
        if blob is None:
            raise NotFound(f"no upload and no object named {name!r}")
        return blob_info(blob)

    def put_name(self, db: Session, garbage: Garbage, owner: str, scope: str, name: str, sha256: str, size: int,
                  creator: str, expires: str | None) -> Blob:  # fmt: skip
        """Point ``name`` at content (replacing what it pointed at); call under the lock."""
        where = sa.and_(Blob.owner == owner, Blob.name_hash == sha256_text(name))
        blob = db.scalar(sa.select(Blob).where(where))
        old = blob.sha256 if blob is not None else None
        if blob is None:
            blob = Blob(owner=owner, scope=scope, name=name, name_hash=sha256_text(name))
            db.add(blob)
        blob.sha256, blob.size, blob.creator, blob.created, blob.expires = sha256, size, creator, now_stamp(), expires
        db.flush()
        if old is not None and old != sha256:
            garbage.content.add(old)
        return blob

    # -- finished objects --------------------------------------------------------------------------------------

    def metadata(self, actor: Actor, name: str) -> BlobInfo:
        with self.service.sessions() as db:
            access = check_access(db, actor, name)
            blob = db.scalar(sa.select(Blob).where(self.where_name(Blob, access, name)))
            if blob is None or (blob.expires is not None and blob.expires < now_stamp()):
                raise NotFound(f"no blob {name!r} that {actor.username!r} may read")
            return blob_info(blob)

    def copy(self, actor: Actor, src: str, dst: str) -> BlobInfo:
        """Make ``dst`` name the content of ``src`` (no bytes move); the caller must read src and write dst."""
        with self.changing() as (db, garbage):
            src_access = check_access(db, actor, src)
            dst_access = check_access(db, actor, dst, write=True)
            blob = db.scalar(sa.select(Blob).where(self.where_name(Blob, src_access, src)))
            if blob is None:
                raise NotFound(f"no blob {src!r} that {actor.username!r} may read")
            self.confirm_contents(db, [blob.sha256], lambda: NotFound(f"{src!r} was deleted meanwhile"))
            made = self.put_name(db, garbage, dst_access.owner, dst_access.scope, dst, blob.sha256, blob.size,
                                  actor.username, blob.expires)  # fmt: skip
            return blob_info(made)

    def copy_many(self, actor: Actor, pairs: list[tuple[str, str]]) -> int:
        """:meth:`copy` for every ``(src, dst)`` pair in one transaction: all of them or none. Sources are read
        before any name changes; the caller passes independent pairs (each ``dst`` once, none also a source). Each
        scope's access is checked once; a source that is missing or not readable is 404 carrying its ``name``."""
        with self.changing() as (db, garbage):
            memo: dict[tuple[str, bool], Access] = {}
            sources = [self.locate(db, actor, src, False, memo) for src, _dst in pairs]
            targets = [self.locate(db, actor, dst, True, memo) for _src, dst in pairs]
            found = self.blob_rows(db, sources)
            writes: list[NameWrite] = []
            for (src, dst), source, target in zip(pairs, sources, targets, strict=True):
                blob = found.get(source[:2])
                if blob is None:
                    raise NotFound(f"no blob {src!r} that {actor.username!r} may read", name=src)
                writes.append(NameWrite(target, dst, blob.sha256, blob.size, blob.expires))
            gone = [write.sha256 for write in writes]
            self.confirm_contents(db, gone, lambda: NotFound("a source was deleted meanwhile"))
            self.write_names(db, garbage, writes, actor.username)
            return len(pairs)

    def copy_prefix(self, actor: Actor, src: str, dst: str, exclude: set[str]) -> int:
        """Name every object of the folder ``src`` (but the relative keys in ``exclude``, and expired ones) at the
        same relative key in the folder ``dst``, in one transaction: the same contents, no bytes move, so the copies
        outlive the source names (content goes with its last name). The caller must read ``src`` and write ``dst``
        (the folders do not overlap); idempotent (a copy again points the names at the same contents). How many.

        The rows are read from the database and written back in a few statements: one request and O(``exclude``)
        bytes on the wire whatever the folder holds. On PostgreSQL the sources are read again under the contents'
        advisory locks: a removal checks the names under the same locks, so content a name points at then is stored
        (no lookup per content in the content store, unlike :meth:`copy_many`)."""
        with self.changing() as (db, garbage):
            src_access = self.named_access(db, actor, src, False)
            dst_access = self.named_access(db, actor, dst, True)
            rows = self._carried(db, src_access, src, exclude)
            locked: set[str] = set()
            while self._cross_process and {row.sha256 for row in rows} - locked:
                locked |= {row.sha256 for row in rows}
                self.lock_contents(db, locked)
                rows = self._carried(db, src_access, src, exclude)
            cut = len(src) + 1
            writes = []
            for row in rows:
                name = f"{dst}/{row.name[cut:]}"
                located = (dst_access.owner, sha256_text(name), dst_access.scope)
                writes.append(NameWrite(located, name, row.sha256, row.size, row.expires))
            if writes:
                self.write_names(db, garbage, writes, actor.username)
            return len(writes)

    def _carried(self, db: Session, access: Access, folder: str, exclude: set[str]) -> list[Any]:
        """The live name rows (name, sha256, size, expires) in ``folder`` but those whose relative key is excluded."""
        now, cut = now_stamp(), len(folder) + 1
        query = self._in_folder(Blob, access, folder).with_only_columns(Blob.name, Blob.sha256, Blob.size, Blob.expires)
        return [
            row
            for row in db.execute(query)
            if row.name[cut:] not in exclude and (row.expires is None or row.expires >= now)
        ]

    def write_names(self, db: Session, garbage: Garbage, writes: list[NameWrite], creator: str) -> str:
        """Point every name of ``writes`` at its content (replacing what it pointed at) in a few statements (call
        under the lock, in the caller's transaction); content that lost a name goes to ``garbage``. The names
        must be distinct. Returns the ``created`` stamp the names got."""
        now = now_stamp()
        existing = self.blob_rows(db, [write.located for write in writes])
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for write in writes:
            owner, name_hash, scope = write.located
            fields = {"sha256": write.sha256, "size": write.size, "creator": creator, "created": now,
                      "expires": write.expires}  # fmt: skip
            old = existing.get((owner, name_hash))
            if old is None:
                inserts.append({"owner": owner, "scope": scope, "name": write.name, "name_hash": name_hash, **fields})
                continue
            updates.append({"id": old.id, **fields})
            if old.sha256 != write.sha256:
                garbage.content.add(old.sha256)
        if inserts:
            db.execute(sa.insert(BLOB_TABLE), inserts)  # Core: the ORM's bulk insert spent ~30 µs more per row
        if updates:
            db.execute(sa.update(Blob), updates)
        return now

    @staticmethod
    def named_access(db: Session, actor: Actor, name: str, write: bool) -> Access:
        """:func:`check_access`, its 404/403 carrying the ``name`` (a client tells them from a missing route)."""
        try:
            return check_access(db, actor, name, write=write)
        except (NotFound, Forbidden) as exc:
            raise type(exc)(exc.reason, name=name) from None

    @staticmethod
    def locate(
        db: Session, actor: Actor, name: str, write: bool, memo: dict[tuple[str, bool], Access]
    ) -> tuple[str, str, str]:
        """``(owner, name_hash, scope)`` of ``name`` after the access check (once per scope, kept in ``memo``:
        access depends on the scope alone); 404/403 carry the ``name``."""
        scope = name.split("/", 1)[0]
        access = memo.get((scope, write))
        if access is None:
            try:
                access = memo[(scope, write)] = check_access(db, actor, name, write=write)
            except (NotFound, Forbidden) as exc:
                raise type(exc)(exc.reason, name=name) from None
        return access.owner, sha256_text(name), access.scope

    @staticmethod
    def blob_rows(db: Session, located: list[tuple[str, str, str]]) -> dict[tuple[str, str], Any]:
        """The blob rows (id, sha256, size, created, expires) of located names, by ``(owner, name_hash)``."""
        by_owner: dict[str, set[str]] = {}
        for owner, name_hash, _scope in located:
            by_owner.setdefault(owner, set()).add(name_hash)
        rows: dict[tuple[str, str], Any] = {}
        columns = (Blob.id, Blob.name_hash, Blob.sha256, Blob.size, Blob.created, Blob.expires)
        for owner, hashes in by_owner.items():
            for batch in in_batches(sorted(hashes)):
                for row in db.execute(sa.select(*columns).where(Blob.owner == owner, Blob.name_hash.in_(batch))):
                    rows[(owner, row.name_hash)] = row
        return rows

    def delete(self, actor: Actor, name: str) -> bool:
        """Remove the object ``name`` and any unfinished upload of it; idempotent. True when there was one."""
        with self.changing() as (db, garbage):
            access = check_access(db, actor, name, write=True)
            upload = db.scalar(sa.select(BlobUpload).where(self.where_name(BlobUpload, access, name)))
            if upload is not None:
                self.drop_upload(db, upload, garbage)
            blob = db.scalar(sa.select(Blob).where(self.where_name(Blob, access, name)))
            if blob is None:
                return upload is not None
            db.delete(blob)
            garbage.content.add(blob.sha256)
            return True

    def delete_prefix(self, actor: Actor, prefix: str) -> int:
        """Remove every object (and unfinished upload) in the folder ``prefix``; how many objects went."""
        with self.changing() as (db, garbage):
            access = check_access(db, actor, prefix, write=True)
            for upload in list(db.scalars(self._in_folder(BlobUpload, access, prefix))):
                self.drop_upload(db, upload, garbage)
            blobs = list(db.scalars(self._in_folder(Blob, access, prefix)))
            for blob in blobs:
                db.delete(blob)
            garbage.content.update(blob.sha256 for blob in blobs)
            return len(blobs)

    @staticmethod
    def _in_folder(table: Any, access: Access, prefix: str) -> Any:
        folder = prefix + "/"
        return sa.select(table).where(
            table.owner == access.owner,
            table.scope == access.scope,
            sa.func.substr(table.name, 1, len(folder)) == folder,
        )

    def listing(self, actor: Actor, prefix: str, after: int, limit: int) -> tuple[list[BlobInfo], int | None]:
        """A page of the objects in the folder ``prefix`` the actor may read, by id after ``after``; and the
        cursor of the next page (None at the end)."""
        now = now_stamp()
        with self.service.sessions() as db:
            if prefix:
                access = blob_access(db, actor, prefix)
                if not access.read:
                    return [], None
                query = self._in_folder(Blob, access, prefix).where(Blob.id > after).order_by(Blob.id)
                rows = list(db.scalars(query.limit(limit + 1)))
                page = rows[:limit]
                found = [blob_info(row) for row in page if row.expires is None or row.expires >= now]
                return found, (page[-1].id if len(rows) > limit else None)
            return self._list_everything(db, actor, after, limit, now)

    def _list_everything(
        self, db: Session, actor: Actor, after: int, limit: int, now: str
    ) -> tuple[list[BlobInfo], int | None]:
        readable: dict[str, bool] = {}
        found: list[BlobInfo] = []
        query = sa.select(Blob).where(Blob.owner.in_(("", actor.username)), Blob.id > after).order_by(Blob.id)
        for row in db.scalars(query.execution_options(yield_per=500)):
            if row.owner == "" and row.scope not in readable:
                access = blob_access(db, actor, row.name)
                readable[row.scope] = access.read and access.owner == ""  # shared, not the caller's private space
            if (row.owner or readable[row.scope]) and (row.expires is None or row.expires >= now):
                found.append(blob_info(row))
                if len(found) == limit:
                    return found, row.id
        return found, None

    def open_download(self, actor: Actor, name: str) -> BlobInfo:
        """The metadata of ``name``, its content held for reading: it stays stored, even if its last name goes
        meanwhile, until :meth:`release_download` (call it exactly once, when the answer ends). 404 when the name,
        or the content it pointed at, went before the download started."""
        for _attempt in range(3):
            info = self.metadata(actor, name)
            if self.hold([info.sha256]) == [True]:
                return info
            # the name pointed at content that a concurrent delete or replace removed: read the name again
        log.error("blob %r: its content %s is missing from the %s", name, info.sha256, self.content.describe())
        raise NotFound(f"the content of {name!r} is missing on the hub")

    def hold(self, sha256s: list[str], *, trust_names: bool = False) -> list[bool]:
        """Hold each content for reading, as :meth:`open_download` does (release each held one with
        :meth:`release_download`); False (and not held) for content no longer stored (its last name went
        meanwhile). With ``trust_names`` content that a name points at now counts as stored without asking the
        content store (one query instead of a request per content to a bucket): held, nothing in this process
        removes it; only content that lost its names is looked up."""
        with self.lock:
            self._hold(sha256s)
        try:
            present = [False] * len(sha256s)
            named = self._named(set(sha256s)) if trust_names else set()
            unsure = [number for number, sha256 in enumerate(sha256s) if sha256 not in named]
            looked_up = self.content.exists_many([sha256s[number] for number in unsure])
            for number, sha256 in enumerate(sha256s):
                present[number] = sha256 in named
            for number, there in zip(unsure, looked_up, strict=True):
                present[number] = there
        except BaseException:
            for sha256 in sha256s:
                self.release_download(sha256)
            raise
        for sha256, there in zip(sha256s, present, strict=True):
            if not there:
                self.release_download(sha256)
        return present

    def content_in_use(self) -> int:
        """How many holds of content (downloads until their answer ended, publishes) and removals run now."""
        with self.lock:
            return sum(self._readers.values()) + len(self._removing)

    def release_download(self, sha256: str) -> None:
        """The end of a hold (a download of ``open_download``, a publish): content that lost its last name
        meanwhile goes now."""
        doomed: set[str] = set()
        with self.lock:
            self._readers[sha256] -= 1
            if self._readers[sha256] > 0:
                return
            del self._readers[sha256]
            if sha256 in self._unnamed_in_use:
                self._unnamed_in_use.discard(sha256)
                doomed = self._doom_unnamed({sha256})
        self._remove(doomed)

    def check_ready(self) -> None:
        """Raise unless new uploads can be staged and the content store answers (``/readyz``)."""
        descriptor, name = tempfile.mkstemp(prefix=".readyz-", dir=self.upload_root)
        os.close(descriptor)
        os.unlink(name)
        self.content.check()

    # -- housekeeping ---------------------------------------------------------------------------------------------

    def sweep(self) -> None:
        """Drop unfinished uploads past their deadline and expired objects (at most every SWEEP_INTERVAL)."""
        now = now_stamp()
        if self._last_sweep and stamp_add(self._last_sweep, SWEEP_INTERVAL) > now:
            return
        self._last_sweep = now
        with self.changing() as (db, garbage):
            stale = list(db.scalars(sa.select(BlobUpload).where(BlobUpload.deadline < now)))
            for row in stale:
                self.drop_upload(db, row, garbage)
            expired = list(db.scalars(sa.select(Blob).where(Blob.expires.is_not(None), Blob.expires < now)))
            for blob in expired:
                db.delete(blob)
            garbage.content.update(blob.sha256 for blob in expired)
        stray = self._drop_stray_upload_files() + self.blocks.sweep()
        if self.content.direct():
            with self.service.sessions() as db:
                known = set(db.scalars(sa.select(BlobUpload.upload_id_hash)))
            try:
                stray += self.content.stray_direct(known, UPLOAD_LIFETIME)
            except HubError as exc:
                log.warning("blob store: cannot sweep the direct uploads of the content store: %s", exc)
        if stale or expired or stray:
            log.info("blob store: dropped %d abandoned uploads, %d expired objects and %d stray upload files",
                     len(stale), len(expired), stray)  # fmt: skip

    def _drop_stray_upload_files(self) -> int:
        """Remove files under ``uploads/`` that no upload names, untouched for a day (a ``data/`` request racing
        the removal of its upload can leave one behind); how many went."""
        with self.service.sessions() as db:
            known = set(db.scalars(sa.select(BlobUpload.upload_id_hash)))
        horizon, count = time.time() - UPLOAD_LIFETIME, 0
        for path in self.upload_root.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.name not in known and path.stat().st_mtime < horizon:
                    path.unlink()
                    count += 1
        return count

    def iter_names(self) -> Iterator[tuple[str, str, str]]:
        """``(owner, name, sha256)`` of every finished blob (for administration and tests)."""
        with self.service.sessions() as db:
            rows = db.execute(sa.select(Blob.owner, Blob.name, Blob.sha256)).all()
        yield from ((owner, name, sha256) for owner, name, sha256 in rows)
