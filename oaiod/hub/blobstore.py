"""The hub's blob store: named, immutable blobs under ``<data_dir>/blobs/``, with the object-service life cycle.

No HTTP here (:mod:`oaiod.hub.blobs` has the routes). Guarantees:

- Content is stored once per sha256 (``blobs/sha256/ab/abcd…``); a name points at content. A server-side copy
  only adds a name, and content goes when its last name goes. A batch of copies is one transaction.
- An upload is created with the caller's secret ``uploadId`` (kept only as its sha256), the expected sha256
  and size. Its bytes go to ``blobs/uploads/<id hash>``, in order, from any offset up to what was received, so
  a client resumes from :meth:`BlobStore.received` after a dropped connection. Finishing checks size and
  sha256 (a mismatch discards the upload), then makes the name point at the content in one transaction:
  readers see the old object or the new one, never a partial one. Finishing is idempotent.
- A different ``uploadId`` for a name with an unfinished upload is refused (409) until that upload is
  cancelled (``DELETE upload/<name>``, by a user who may write the name) or expires (1 day).
- A finished name may be uploaded again: the old object stays readable until the new upload finishes.
- Names change under one lock; content whose last name went is removed from disk after the commit (still
  under the lock, so no name can point at it again meanwhile), and not before the downloads reading it end:
  a download that found its name reads the content fully, one that did not answers 404.
- Deleting an object (``delete/``, ``wipe_user/``) drops every blob and unfinished upload under its id in the
  same transaction (:meth:`BlobStore.removing`, an :class:`~oaiod.hub.service.Attachment`); wiping a user drops
  their private blobs, the blobs of ids they minted and never registered, and their unfinished uploads.
- Who may read and write a name: :mod:`oaiod.hub.blobaccess`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from oaiod.hub.blobaccess import Access, blob_access, check_access
from oaiod.hub.db import Blob, BlobUpload, Object, stamp_add
from oaiod.hub.errors import BadRequest, Conflict, Forbidden, InsufficientStorage, NotFound, TooLarge
from oaiod.hub.service import Actor, HubService, Removal
from oaiod.model import now_stamp

log = logging.getLogger("oaiod.hub.blobs")

UPLOAD_LIFETIME = 24 * 3600.0  #: seconds an unfinished upload is kept
SWEEP_INTERVAL = 600.0  #: seconds between sweeps of expired uploads and objects
HASH_BLOCK = 4 * 1024 * 1024
BATCH = 500  #: values in one SQL ``IN (…)``

T = TypeVar("T")


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


def _info(row: Blob) -> BlobInfo:
    return BlobInfo(row.name, row.size, row.sha256, row.created, row.expires)


def _batches(values: Iterable[T]) -> Iterator[list[T]]:
    """``values`` in lists of at most :data:`BATCH` (for ``IN (…)``)."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _file_size(path: Path) -> int:
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


class UploadTarget:
    """Receives the bytes of one ``data/`` request into an upload's file, from ``offset`` on (thread methods)."""

    def __init__(self, store: BlobStore, upload_key: int, file: BinaryIO, offset: int, size: int, hasher: Any):
        self.store, self.upload_key, self.size = store, upload_key, size
        self.position = offset
        self._file = file
        self._file.truncate(offset)
        self._file.seek(offset)
        self._hash = hasher

    def write(self, data: bytes | bytearray) -> None:
        if self.position + len(data) > self.size:
            raise TooLarge(f"the upload was created for {self.size} bytes; this request sends more")
        try:
            self._file.write(data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage("the hub's disk is full") from None
            raise
        if self._hash is not None:
            self._hash.update(data)
        self.position += len(data)

    def close(self) -> int:
        """Flush what arrived (a dropped connection keeps every byte received) and free the upload; the size."""
        try:
            self._file.flush()
        finally:
            self._file.close()
            self.store.release(self.upload_key, self.position, self._hash)
        return self.position


class BlobStore:
    """Every blob operation of one hub (thread-safe: routes call it from the thread pool). Creating it attaches
    it to ``service``, which from then on hands it every object deletion and user wipe."""

    def __init__(self, service: HubService) -> None:
        self.service = service
        self.root = service.settings.data_dir / "blobs"
        self.content_root = self.root / "sha256"
        self.upload_root = self.root / "uploads"
        for folder in (self.root, self.content_root, self.upload_root):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()  # name and content changes; never held during a transfer
        self._busy: set[int] = set()  # uploads with a data/ request running
        self._hashers: dict[int, tuple[int, Any]] = {}  # upload id -> (bytes hashed, sha256 object)
        self._readers: Counter[str] = Counter()  # content sha256 -> downloads reading it
        self._unnamed_in_use: set[str] = set()  # content that lost its last name while being downloaded
        self._last_sweep = ""
        service.attach(self)

    # -- paths ---------------------------------------------------------------------------------------------------

    def content_path(self, sha256: str) -> Path:
        return self.content_root / sha256[:2] / sha256

    def upload_path(self, row: BlobUpload) -> Path:
        return self.upload_root / row.upload_id_hash

    @staticmethod
    def _where(table: Any, access: Access, name: str) -> Any:
        return sa.and_(table.owner == access.owner, table.name_hash == sha256_text(name))

    # -- changing names ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _collecting(self) -> Iterator[Garbage]:
        """Hold the lock over a change of names, then remove what it left behind: content with no name left
        (whether or not the change committed: the check reads the committed state) and, only when it committed,
        the files of the uploads it dropped."""
        garbage = Garbage()
        with self._lock:
            try:
                yield garbage
            finally:
                self._remove_unnamed(garbage.content)
            for path in garbage.upload_files:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    @contextlib.contextmanager
    def _changing(self) -> Iterator[tuple[Session, Garbage]]:
        """A transaction that changes names, under the lock, cleaned up after commit (see :meth:`_collecting`)."""
        with self._collecting() as garbage, self.service.sessions.begin() as db:
            yield db, garbage

    def _remove_unnamed(self, candidates: set[str]) -> None:
        """Unlink the content among ``candidates`` that no name points at (call under the lock, after commit);
        content a download is reading waits until its last reader ends (:meth:`release_download`)."""
        if not candidates:
            return
        named: set[str] = set()
        with self.service.sessions() as db:
            for batch in _batches(sorted(candidates)):
                named.update(db.scalars(sa.select(Blob.sha256).where(Blob.sha256.in_(batch)).distinct()))
        for sha256 in candidates - named:
            if self._readers[sha256]:
                self._unnamed_in_use.add(sha256)
                continue
            with contextlib.suppress(FileNotFoundError):
                self.content_path(sha256).unlink()

    @contextlib.contextmanager
    def removing(self) -> Iterator[Callable[[Session, Removal], None]]:
        """The :class:`~oaiod.hub.service.Attachment` hook: the hub deletes objects or wipes a user, and the blob
        store drops its part in the same transaction, under its lock (see the module docstring)."""
        with self._collecting() as garbage:
            yield lambda db, removal: self.drop_removed(db, removal, garbage)

    def drop_removed(self, db: Session, removal: Removal, garbage: Garbage) -> None:
        """Drop the blobs and uploads under deleted objects' ids, and those of wiped users: their private ones,
        those under ids they minted and never registered, and every unfinished upload they started."""
        blobs: list[Any] = []
        uploads: list[Any] = []
        for ids in _batches(removal.oaio_ids):
            blobs.append(sa.and_(Blob.owner == "", Blob.scope.in_(ids)))
            uploads.append(sa.and_(BlobUpload.owner == "", BlobUpload.scope.in_(ids)))
        for users in _batches(removal.usernames):
            registered = sa.exists().where(Object.oaio_id == Blob.scope)
            blobs += [Blob.owner.in_(users), sa.and_(Blob.owner == "", Blob.creator.in_(users), ~registered)]
            uploads += [BlobUpload.owner.in_(users), BlobUpload.creator.in_(users)]
        for where in uploads:
            for upload in list(db.scalars(sa.select(BlobUpload).where(where))):
                self._drop_upload(db, upload, garbage)
        for where in blobs:
            rows = db.execute(sa.select(Blob.id, Blob.sha256).where(where)).all()
            for ids in _batches(row_id for row_id, _sha256 in rows):
                db.execute(sa.delete(Blob).where(Blob.id.in_(ids)))
            garbage.content.update(sha256 for _row_id, sha256 in rows)
        db.flush()

    # -- uploads -------------------------------------------------------------------------------------------------

    def create_upload(
        self, actor: Actor, name: str, upload_id: str, sha256: str, size: int, expires: str | None
    ) -> BlobUpload:
        """Create (or renew, with the same ``upload_id``) the upload of ``name``; 409 for another ``upload_id``."""
        self.sweep()
        id_hash, now = sha256_text(upload_id), now_stamp()
        with self._changing() as (db, garbage):
            access = check_access(db, actor, name, write=True)
            row = db.scalar(sa.select(BlobUpload).where(self._where(BlobUpload, access, name)))
            if row is not None and row.deadline < now:
                self._drop_upload(db, row, garbage)
                row = None
            if row is None:
                if db.scalar(sa.select(BlobUpload.id).where(BlobUpload.upload_id_hash == id_hash)) is not None:
                    raise Conflict("this uploadId is in use for another name; choose a new random one")
                row = BlobUpload(owner=access.owner, scope=access.scope, name=name, name_hash=sha256_text(name),
                                 upload_id_hash=id_hash, sha256=sha256, size=size, creator=actor.username,
                                 created=now, deadline=stamp_add(now, UPLOAD_LIFETIME), expires=expires)  # fmt: skip
                db.add(row)
                db.flush()
                return row
            if not hmac.compare_digest(row.upload_id_hash, id_hash):
                raise Conflict(f"another upload of {name!r} is in progress (cancel it with DELETE upload/)")
            if (row.sha256, row.size, row.expires) != (sha256, size, expires):
                raise Conflict("sha256, size and expires cannot change after the first createUpload")
            row.deadline = stamp_add(now, UPLOAD_LIFETIME)
            return row

    def _upload_row(self, db: Session, actor: Actor, name: str, upload_id: str) -> BlobUpload:
        access = check_access(db, actor, name, write=True)
        row = db.scalar(sa.select(BlobUpload).where(self._where(BlobUpload, access, name)))
        if row is None or row.deadline < now_stamp():
            raise NotFound(f"no unfinished upload of {name!r} (create it first with PUT upload/)")
        if not hmac.compare_digest(row.upload_id_hash, sha256_text(upload_id)):
            raise Conflict(f"the uploadId does not match the unfinished upload of {name!r}")
        return row

    def write_inline(self, row: BlobUpload, data: bytes) -> None:
        """The whole content of a small upload, sent with ``createUpload``."""
        if len(data) != row.size:
            raise BadRequest(f"objectData holds {len(data)} bytes, not the announced size {row.size}")
        target = self.open_target(row, 0)
        try:
            target.write(data)
        finally:
            target.close()

    def target(self, actor: Actor, name: str, upload_id: str, offset: int) -> UploadTarget:
        """Where a ``data/`` request writes; 409 when ``offset`` is beyond what was received."""
        with self.service.sessions() as db:
            row = self._upload_row(db, actor, name, upload_id)
        return self.open_target(row, offset)

    def open_target(self, row: BlobUpload, offset: int) -> UploadTarget:
        """The upload's file, open at ``offset`` and marked busy. Opened under the lock, after checking that the
        upload still exists: no file is made for an upload dropped meanwhile (404). 409 when ``offset`` is beyond
        what was received, or another transfer to the upload runs."""
        path = self.upload_path(row)
        with self._lock:
            if self._dropped(row):
                raise NotFound(f"the upload of {row.name!r} was cancelled, or its object deleted, meanwhile")
            received = _file_size(path)
            if offset > received or offset > row.size:
                raise Conflict(f"offset {offset} is beyond the {received} bytes received; resume from there",
                               received=received)  # fmt: skip
            if row.id in self._busy:
                raise Conflict("another transfer to this upload is running; retry shortly", received=received)
            file = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed by UploadTarget.close
            self._busy.add(row.id)
            done, digest = self._hashers.pop(row.id, (0, None))
        if offset == 0:
            digest = hashlib.sha256()
        elif digest is not None and done != offset:
            digest = None  # the running hash does not cover exactly what is kept: hashed in full at finish
        try:
            return UploadTarget(self, row.id, file, offset, row.size, digest)
        except BaseException:
            file.close()
            self.release(row.id, offset, None)
            raise

    def _dropped(self, row: BlobUpload) -> bool:
        """True when the upload ``row`` is gone (cancelled, expired, its object deleted or its user wiped)."""
        with self.service.sessions() as db:
            stored = db.get(BlobUpload, row.id)
        return stored is None or stored.upload_id_hash != row.upload_id_hash  # SQLite may reuse a dropped id

    def release(self, upload_key: int, position: int, digest: Any) -> None:
        """The end of a transfer to an upload: keep its running hash, unless the upload was dropped meanwhile."""
        with self._lock:
            if upload_key not in self._busy:
                return
            self._busy.discard(upload_key)
            if digest is not None:
                self._hashers[upload_key] = (position, digest)

    def received(self, actor: Actor, name: str, upload_id: str) -> dict[str, int]:
        """How many bytes of the upload the hub holds (the offset to resume from) and its announced size."""
        with self.service.sessions() as db:
            row = self._upload_row(db, actor, name, upload_id)
        return {"received": _file_size(self.upload_path(row)), "size": row.size}

    def cancel_upload(self, actor: Actor, name: str) -> bool:
        """Drop the unfinished upload of ``name`` (whoever started it); True when there was one."""
        with self._changing() as (db, garbage):
            access = check_access(db, actor, name, write=True)
            row = db.scalar(sa.select(BlobUpload).where(self._where(BlobUpload, access, name)))
            if row is None:
                return False
            self._drop_upload(db, row, garbage)
            return True

    def _drop_upload(self, db: Session, row: BlobUpload, garbage: Garbage) -> None:
        """Forget an unfinished upload (call under the lock); its file goes once the change committed."""
        db.delete(row)
        self._hashers.pop(row.id, None)
        self._busy.discard(row.id)  # a transfer still running writes into the removed file, and keeps no hash
        garbage.upload_files.append(self.upload_path(row))

    def finish_upload(self, actor: Actor, name: str, upload_id: str) -> BlobInfo:
        """Verify size and sha256 and publish the upload under its name; idempotent once finished."""
        with self.service.sessions() as db:
            access = check_access(db, actor, name, write=True)
            row = db.scalar(sa.select(BlobUpload).where(self._where(BlobUpload, access, name)))
            if row is None:
                return self._finished(db, access, name)
        row = self._claim_upload(actor, name, upload_id)
        try:
            path = self.upload_path(row)
            received = _file_size(path)
            if received != row.size and self._dropped(row):
                raise NotFound(f"the upload of {name!r} was cancelled, or its object deleted, meanwhile")
            if received != row.size:
                raise Conflict(f"received {received} of {row.size} bytes; send the rest first", received=received)
            digest = self._digest(row, path)
            if not hmac.compare_digest(digest, row.sha256):
                with self._changing() as (db, garbage):
                    stored = db.get(BlobUpload, row.id)
                    if stored is not None and stored.upload_id_hash == row.upload_id_hash:
                        self._drop_upload(db, stored, garbage)
                log.warning("blob upload of %r by %s discarded: sha256 %s, expected %s", name, actor.username,
                            digest, row.sha256)  # fmt: skip
                raise BadRequest(f"the data has sha256 {digest}, not {row.sha256}; the upload is discarded")
            return self._publish(row, path)
        except FileNotFoundError:  # its file went with the upload, dropped while it was checked
            raise NotFound(f"the upload of {name!r} was cancelled, or its object deleted, meanwhile") from None
        finally:
            with self._lock:
                self._busy.discard(row.id)

    def _claim_upload(self, actor: Actor, name: str, upload_id: str) -> BlobUpload:
        """The upload row, marked busy: no ``data/`` request may change the file while it is checked."""
        with self.service.sessions() as db:
            row = self._upload_row(db, actor, name, upload_id)
        with self._lock:
            if row.id in self._busy:
                raise Conflict("a transfer to this upload is still running; finish after it")
            self._busy.add(row.id)
        return row

    def _finished(self, db: Session, access: Access, name: str) -> BlobInfo:
        blob = db.scalar(sa.select(Blob).where(self._where(Blob, access, name)))
        if blob is None:
            raise NotFound(f"no upload and no object named {name!r}")
        return _info(blob)

    def _digest(self, row: BlobUpload, path: Path) -> str:
        with self._lock:
            done, digest = self._hashers.get(row.id, (0, None))
        if digest is not None and done == row.size:
            return digest.hexdigest()
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while block := file.read(HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def _publish(self, row: BlobUpload, path: Path) -> BlobInfo:
        with open(path, "rb") as file:
            os.fsync(file.fileno())
        content = self.content_path(row.sha256)
        with self._changing() as (db, garbage):
            stored = db.get(BlobUpload, row.id)
            if stored is None or stored.upload_id_hash != row.upload_id_hash:  # finished or dropped meanwhile
                return self._finished(db, Access(row.owner, row.scope, True, True), row.name)
            if content.exists():
                garbage.upload_files.append(path)
            else:
                content.parent.mkdir(exist_ok=True, mode=0o700)
                os.replace(path, content)
                _fsync_folder(content.parent)
                garbage.content.add(row.sha256)  # removed again should the commit fail
            db.delete(stored)
            self._hashers.pop(row.id, None)
            blob = self._put_name(db, garbage, row.owner, row.scope, row.name, row.sha256, row.size, row.creator,
                                  row.expires)  # fmt: skip
            return _info(blob)

    def _put_name(self, db: Session, garbage: Garbage, owner: str, scope: str, name: str, sha256: str, size: int,
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
            blob = db.scalar(sa.select(Blob).where(self._where(Blob, access, name)))
            if blob is None or (blob.expires is not None and blob.expires < now_stamp()):
                raise NotFound(f"no blob {name!r} that {actor.username!r} may read")
            return _info(blob)

    def copy(self, actor: Actor, src: str, dst: str) -> BlobInfo:
        """Make ``dst`` name the content of ``src`` (no bytes move); the caller must read src and write dst."""
        with self._changing() as (db, garbage):
            src_access = check_access(db, actor, src)
            dst_access = check_access(db, actor, dst, write=True)
            blob = db.scalar(sa.select(Blob).where(self._where(Blob, src_access, src)))
            if blob is None:
                raise NotFound(f"no blob {src!r} that {actor.username!r} may read")
            made = self._put_name(db, garbage, dst_access.owner, dst_access.scope, dst, blob.sha256, blob.size,
                                  actor.username, blob.expires)  # fmt: skip
            return _info(made)

    def copy_many(self, actor: Actor, pairs: list[tuple[str, str]]) -> int:
        """:meth:`copy` for every ``(src, dst)`` pair in one transaction: all of them or none. Sources are read
        before any name changes; the caller passes independent pairs (each ``dst`` once, none also a source). Each
        scope's access is checked once; a source that is missing or not readable is 404 carrying its ``name``."""
        now = now_stamp()
        with self._changing() as (db, garbage):
            memo: dict[tuple[str, bool], Access] = {}
            sources = [self._locate(db, actor, src, False, memo) for src, _dst in pairs]
            targets = [self._locate(db, actor, dst, True, memo) for _src, dst in pairs]
            found, existing = self._blob_rows(db, sources), self._blob_rows(db, targets)
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            for (src, dst), source, (owner, name_hash, scope) in zip(pairs, sources, targets, strict=True):
                blob = found.get(source[:2])
                if blob is None:
                    raise NotFound(f"no blob {src!r} that {actor.username!r} may read", name=src)
                fields = {"sha256": blob.sha256, "size": blob.size, "creator": actor.username, "created": now,
                          "expires": blob.expires}  # fmt: skip
                old = existing.get((owner, name_hash))
                if old is None:
                    inserts.append({"owner": owner, "scope": scope, "name": dst, "name_hash": name_hash, **fields})
                    continue
                updates.append({"id": old.id, **fields})
                if old.sha256 != blob.sha256:
                    garbage.content.add(old.sha256)
            if inserts:
                db.execute(sa.insert(Blob), inserts)
            if updates:
                db.execute(sa.update(Blob), updates)
            return len(pairs)

    @staticmethod
    def _locate(
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
    def _blob_rows(db: Session, located: list[tuple[str, str, str]]) -> dict[tuple[str, str], Any]:
        """The blob rows (id, sha256, size, expires) of located names, by ``(owner, name_hash)``."""
        by_owner: dict[str, set[str]] = {}
        for owner, name_hash, _scope in located:
            by_owner.setdefault(owner, set()).add(name_hash)
        rows: dict[tuple[str, str], Any] = {}
        columns = (Blob.id, Blob.name_hash, Blob.sha256, Blob.size, Blob.expires)
        for owner, hashes in by_owner.items():
            for batch in _batches(sorted(hashes)):
                for row in db.execute(sa.select(*columns).where(Blob.owner == owner, Blob.name_hash.in_(batch))):
                    rows[(owner, row.name_hash)] = row
        return rows

    def delete(self, actor: Actor, name: str) -> bool:
        """Remove the object ``name`` and any unfinished upload of it; idempotent. True when there was one."""
        with self._changing() as (db, garbage):
            access = check_access(db, actor, name, write=True)
            upload = db.scalar(sa.select(BlobUpload).where(self._where(BlobUpload, access, name)))
            if upload is not None:
                self._drop_upload(db, upload, garbage)
            blob = db.scalar(sa.select(Blob).where(self._where(Blob, access, name)))
            if blob is None:
                return upload is not None
            db.delete(blob)
            garbage.content.add(blob.sha256)
            return True

    def delete_prefix(self, actor: Actor, prefix: str) -> int:
        """Remove every object (and unfinished upload) in the folder ``prefix``; how many objects went."""
        with self._changing() as (db, garbage):
            access = check_access(db, actor, prefix, write=True)
            for upload in list(db.scalars(self._in_folder(BlobUpload, access, prefix))):
                self._drop_upload(db, upload, garbage)
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
                found = [_info(row) for row in page if row.expires is None or row.expires >= now]
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
                found.append(_info(row))
                if len(found) == limit:
                    return found, row.id
        return found, None

    def open_download(self, actor: Actor, name: str) -> tuple[Path, BlobInfo]:
        """The content of ``name``, held for reading: it stays on disk, even if its last name goes meanwhile,
        until :meth:`release_download` (call it exactly once, when the answer ends). 404 when the name, or the
        content it pointed at, went before the download started."""
        for _attempt in range(3):
            info = self.metadata(actor, name)
            path = self.content_path(info.sha256)
            with self._lock:
                if path.exists():
                    self._readers[info.sha256] += 1
                    return path, info
            # the name pointed at content that a concurrent delete or replace removed: read the name again
        log.error("blob %r: its content %s is missing from %s", name, info.sha256, self.content_root)
        raise NotFound(f"the content of {name!r} is missing on the hub")

    def downloads_in_flight(self) -> int:
        """How many downloads hold content now (each until its answer ended)."""
        with self._lock:
            return sum(self._readers.values())

    def release_download(self, sha256: str) -> None:
        """The end of a download of ``open_download``: content that lost its last name meanwhile goes now."""
        with self._lock:
            self._readers[sha256] -= 1
            if self._readers[sha256] > 0:
                return
            del self._readers[sha256]
            if sha256 in self._unnamed_in_use:
                self._unnamed_in_use.discard(sha256)
                self._remove_unnamed({sha256})

    # -- housekeeping ---------------------------------------------------------------------------------------------

    def sweep(self) -> None:
        """Drop unfinished uploads past their deadline and expired objects (at most every SWEEP_INTERVAL)."""
        now = now_stamp()
        if self._last_sweep and stamp_add(self._last_sweep, SWEEP_INTERVAL) > now:
            return
        self._last_sweep = now
        with self._changing() as (db, garbage):
            stale = list(db.scalars(sa.select(BlobUpload).where(BlobUpload.deadline < now)))
            for row in stale:
                self._drop_upload(db, row, garbage)
            expired = list(db.scalars(sa.select(Blob).where(Blob.expires.is_not(None), Blob.expires < now)))
            for blob in expired:
                db.delete(blob)
            garbage.content.update(blob.sha256 for blob in expired)
        stray = self._drop_stray_upload_files()
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


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
