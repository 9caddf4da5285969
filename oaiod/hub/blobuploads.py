"""The resumable upload life cycle of the hub's blob store: createUpload, data, upload-status, cancel, finish.

No HTTP here (:mod:`oaiod.hub.blobs` has the routes); names, content and the lock are the store's
(:mod:`oaiod.hub.blobstore`). Guarantees:

- An upload is created with the caller's secret ``uploadId`` (kept only as its sha256), the expected sha256
  and size. Its bytes go to ``blobs/uploads/<id hash>``, in order, from any offset up to what was received, so
  a client resumes from :meth:`Uploads.received` after a dropped connection. Finishing checks size and
  sha256 (a mismatch discards the upload), then makes the name point at the content in one transaction:
  readers see the old object or the new one, never a partial one. Finishing is idempotent.
- A different ``uploadId`` for a name with an unfinished upload is refused (409) until that upload is
  cancelled (``DELETE upload/<name>``, by a user who may write the name) or expires (1 day).
- A finished name may be uploaded again: the old object stays readable until the new upload finishes.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from oaiod.hub.blobaccess import Access, check_access
from oaiod.hub.blobcontent import DirectParts
from oaiod.hub.blobstore import (
    HASH_BLOCK,
    UPLOAD_LIFETIME,
    BlobInfo,
    BlobStore,
    blob_info,
    file_size,
    sha256_text,
)
from oaiod.hub.db import BlobUpload, stamp_add
from oaiod.hub.errors import (
    BadRequest,
    Conflict,
    HubError,
    InsufficientStorage,
    NotFound,
    StoreUnavailable,
    TooLarge,
)
from oaiod.hub.service import Actor
from oaiod.model import now_stamp

log = logging.getLogger("oaiod.hub.blobs")

FINISH_WAIT = 300.0  #: seconds a finish waits for another finish of the same upload (hashing a large file)


def content_gone() -> HubError:
    return StoreUnavailable("another hub process removed this content while it was published; send it again")


class UploadTarget:
    """Receives the bytes of one ``data/`` request into an upload's file, from ``offset`` on (thread methods)."""

    def __init__(self, store: Uploads, upload_key: int, file: BinaryIO, offset: int, size: int, hasher: Any):
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


class Uploads:
    """The upload routes' operations on one :class:`BlobStore` (thread-safe: routes call it from the thread pool)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._finishing: dict[int, threading.Event] = {}  # upload id -> set when the finish running on it ends

    def create_upload(
        self,
        actor: Actor,
        name: str,
        upload_id: str,
        sha256: str,
        size: int,
        expires: str | None,
        inline: bytes | None = None,
    ) -> BlobUpload:
        """Create (or renew, with the same ``upload_id``) the upload of ``name``; 409 for another ``upload_id``.

        ``inline``: the whole content, sent with the request, written at once. A refused request leaves nothing
        behind: a short ``inline`` is refused before any row is made, and an upload this call created is dropped
        again when writing its bytes fails (a renewed one stays as it was)."""
        if inline is not None and len(inline) != size:
            raise BadRequest(f"objectData holds {len(inline)} bytes, not the announced size {size}")
        row, created = self._create_row(actor, name, upload_id, sha256, size, expires)
        if inline is None:
            return row
        try:
            self._write_inline(row, inline)
        except BaseException:
            if created:
                self._drop_if_current(row)
            raise
        return row

    def _create_row(
        self, actor: Actor, name: str, upload_id: str, sha256: str, size: int, expires: str | None
    ) -> tuple[BlobUpload, bool]:
        """The upload row of ``name`` for ``upload_id``, committed; True when this call made it."""
        self.store.sweep()
        id_hash, now = sha256_text(upload_id), now_stamp()
        with self.store.changing() as (db, garbage):
            access = check_access(db, actor, name, write=True)
            row = db.scalar(sa.select(BlobUpload).where(self.store.where_name(BlobUpload, access, name)))
            if row is not None and row.deadline < now:
                self.store.drop_upload(db, row, garbage)
                row = None
            if row is None:
                if db.scalar(sa.select(BlobUpload.id).where(BlobUpload.upload_id_hash == id_hash)) is not None:
                    raise Conflict("this uploadId is in use for another name; choose a new random one")
                row = BlobUpload(owner=access.owner, scope=access.scope, name=name, name_hash=sha256_text(name),
                                 upload_id_hash=id_hash, sha256=sha256, size=size, creator=actor.username,
                                 created=now, deadline=stamp_add(now, UPLOAD_LIFETIME), expires=expires)  # fmt: skip
                db.add(row)
                db.flush()
                return row, True
            if not hmac.compare_digest(row.upload_id_hash, id_hash):
                raise Conflict(f"another upload of {name!r} is in progress (cancel it with DELETE upload/)")
            if (row.sha256, row.size, row.expires) != (sha256, size, expires):
                raise Conflict("sha256, size and expires cannot change after the first createUpload")
            row.deadline = stamp_add(now, UPLOAD_LIFETIME)
            return row, False

    def _drop_if_current(self, row: BlobUpload) -> None:
        """Drop the upload ``row`` (and its file), unless it went or was replaced meanwhile."""
        with self.store.changing() as (db, garbage):
            stored = db.get(BlobUpload, row.id)
            if stored is not None and stored.upload_id_hash == row.upload_id_hash:
                self.store.drop_upload(db, stored, garbage)

    def _upload_row(self, db: Session, actor: Actor, name: str, upload_id: str) -> BlobUpload:
        access = check_access(db, actor, name, write=True)
        row = db.scalar(sa.select(BlobUpload).where(self.store.where_name(BlobUpload, access, name)))
        if row is None or row.deadline < now_stamp():
            raise NotFound(f"no unfinished upload of {name!r} (create it first with PUT upload/)")
        if not hmac.compare_digest(row.upload_id_hash, sha256_text(upload_id)):
            raise Conflict(f"the uploadId does not match the unfinished upload of {name!r}")
        return row

    def _write_inline(self, row: BlobUpload, data: bytes) -> None:
        """The whole content of a small upload, sent with ``createUpload`` (its length already checked)."""
        target = self.open_target(row, 0)
        try:
            target.write(data)
        finally:
            target.close()

    def target(self, actor: Actor, name: str, upload_id: str, offset: int) -> UploadTarget:
        """Where a ``data/`` request writes; 409 when ``offset`` is beyond what was received."""
        with self.store.service.sessions() as db:
            row = self._upload_row(db, actor, name, upload_id)
        return self.open_target(row, offset)

    def open_target(self, row: BlobUpload, offset: int) -> UploadTarget:
        """The upload's file, open at ``offset`` and marked busy. Opened under the lock, after checking that the
        upload still exists: no file is made for an upload dropped meanwhile (404). 409 when ``offset`` is beyond
        what was received, or another transfer to the upload runs."""
        path = self.store.upload_path(row)
        with self.store.lock:
            if self._dropped(row):
                raise NotFound(f"the upload of {row.name!r} was cancelled, or its object deleted, meanwhile")
            received = file_size(path)
            if offset > received or offset > row.size:
                raise Conflict(f"offset {offset} is beyond the {received} bytes received; resume from there",
                               received=received)  # fmt: skip
            if row.id in self.store.busy:
                raise Conflict("another transfer to this upload is running; retry shortly", received=received)
            file = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed by UploadTarget.close
            self.store.busy.add(row.id)
            done, digest = self.store.hashers.pop(row.id, (0, None))
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
        with self.store.service.sessions() as db:
            stored = db.get(BlobUpload, row.id)
        return stored is None or stored.upload_id_hash != row.upload_id_hash  # SQLite may reuse a dropped id

    def release(self, upload_key: int, position: int, digest: Any) -> None:
        """The end of a transfer to an upload: keep its running hash, unless the upload was dropped meanwhile."""
        with self.store.lock:
            if upload_key not in self.store.busy:
                return
            self.store.busy.discard(upload_key)
            if digest is not None:
                self.store.hashers[upload_key] = (position, digest)

    def received(self, actor: Actor, name: str, upload_id: str) -> dict[str, int]:
        """How many bytes of the upload the hub holds (the offset to resume from) and its announced size."""
        with self.store.service.sessions() as db:
            row = self._upload_row(db, actor, name, upload_id)
        received = file_size(self.store.upload_path(row))
        if received == 0:  # perhaps a direct upload: its parts are in the content store
            received = self.store.content.direct_received(row.upload_id_hash) or 0
        return {"received": received, "size": row.size}

    def cancel_upload(self, actor: Actor, name: str) -> bool:
        """Drop the unfinished upload of ``name`` (whoever started it); True when there was one."""
        with self.store.changing() as (db, garbage):
            access = check_access(db, actor, name, write=True)
            row = db.scalar(sa.select(BlobUpload).where(self.store.where_name(BlobUpload, access, name)))
            if row is None:
                return False
            self.store.drop_upload(db, row, garbage)
            return True

    def finish_upload(self, actor: Actor, name: str, upload_id: str) -> BlobInfo:
        """Verify size and sha256 and publish the upload under its name. Idempotent: once the name is published,
        every finish answers its metadata, whatever the ``uploadId``; a finish racing another of the same upload
        waits for it (up to :data:`FINISH_WAIT`) and then answers as that one did."""
        while True:
            with self.store.service.sessions() as db:
                access = check_access(db, actor, name, write=True)
                row = db.scalar(sa.select(BlobUpload).where(self.store.where_name(BlobUpload, access, name)))
                if row is None:
                    return self.store.finished(db, access, name)
            if row.deadline < now_stamp():
                raise NotFound(f"no unfinished upload of {name!r} (create it first with PUT upload/)")
            if not hmac.compare_digest(row.upload_id_hash, sha256_text(upload_id)):
                raise Conflict(f"the uploadId does not match the unfinished upload of {name!r}")
            if self._claim_for_finish(row):
                break
        try:
            return self._check_and_publish(actor, row)
        finally:
            with self.store.lock:
                self.store.busy.discard(row.id)
                self._finishing.pop(row.id).set()

    def _claim_for_finish(self, row: BlobUpload) -> bool:
        """Mark the upload busy (no ``data/`` request may change its file while it is checked) and finishing.
        False when the upload went meanwhile (finished, cancelled or expired: the caller reads the name again);
        a finish of it that runs already is waited for first. 409 while a ``data/`` transfer runs."""
        deadline = time.monotonic() + FINISH_WAIT
        while True:
            with self.store.lock:
                running = self._finishing.get(row.id)
                if running is None:
                    if self._dropped(row):  # under the lock: nobody publishes or drops it between here and the claim
                        return False
                    if row.id in self.store.busy:
                        raise Conflict("a transfer to this upload is still running; finish after it")
                    self.store.busy.add(row.id)
                    self._finishing[row.id] = threading.Event()
                    return True
            if not running.wait(max(deadline - time.monotonic(), 0)):
                raise Conflict("another finish of this upload is still checking it; retry shortly")

    def _check_and_publish(self, actor: Actor, row: BlobUpload) -> BlobInfo:
        name = row.name
        try:
            path = self.store.upload_path(row)
            received = file_size(path)
            if received != row.size and self._dropped(row):
                raise NotFound(f"the upload of {name!r} was cancelled, or its object deleted, meanwhile")
            if received == 0 and (direct := self.store.content.direct_received(row.upload_id_hash)) is not None:
                return self._publish_direct(actor, row, direct)
            if received != row.size:
                raise Conflict(f"received {received} of {row.size} bytes; send the rest first", received=received)
            digest = self._digest(row, path)
            if not hmac.compare_digest(digest, row.sha256):
                with self.store.changing() as (db, garbage):
                    stored = db.get(BlobUpload, row.id)
                    if stored is not None and stored.upload_id_hash == row.upload_id_hash:
                        self.store.drop_upload(db, stored, garbage)
                log.warning("blob upload of %r by %s discarded: sha256 %s, expected %s", name, actor.username,
                            digest, row.sha256)  # fmt: skip
                raise BadRequest(f"the data has sha256 {digest}, not {row.sha256}; the upload is discarded")
            return self._publish(row, lambda: self.store.content.place([(row.sha256, path)]))
        except FileNotFoundError:  # its file went with the upload, dropped while it was checked
            raise NotFound(f"the upload of {name!r} was cancelled, or its object deleted, meanwhile") from None

    def _digest(self, row: BlobUpload, path: Path) -> str:
        with self.store.lock:
            done, digest = self.store.hashers.get(row.id, (0, None))
        if digest is not None and done == row.size:
            return digest.hexdigest()
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while block := file.read(HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def _publish(self, row: BlobUpload, place: Callable[[], None]) -> BlobInfo:
        """Store the verified bytes as content (``place``; held: nothing removes them before the name commits),
        then point the name at them in one transaction."""
        with self.store.holding([row.sha256]):
            place()
            with self.store.changing() as (db, garbage):
                garbage.content.add(row.sha256)  # removed again should no name point at it after this change
                self.store.confirm_contents(db, [row.sha256], content_gone)
                stored = db.get(BlobUpload, row.id)
                if stored is None or stored.upload_id_hash != row.upload_id_hash:  # finished or dropped meanwhile
                    return self.store.finished(db, Access(row.owner, row.scope, True, True), row.name)
                db.delete(stored)
                self.store.hashers.pop(row.id, None)
                blob = self.store.put_name(db, garbage, row.owner, row.scope, row.name, row.sha256, row.size,
                                           row.creator, row.expires)  # fmt: skip
                return blob_info(blob)

    def _publish_direct(self, actor: Actor, row: BlobUpload, received: int) -> BlobInfo:
        """Publish an upload whose parts the client put into the content store directly: the store assembles
        and verifies them (a wrong sha256 discards the upload: 400), then the name commits as for any upload."""
        if received != row.size:
            raise Conflict(f"received {received} of {row.size} bytes; send the rest first", received=received)
        try:
            return self._publish(row, lambda: self.store.content.finish_direct(row.upload_id_hash, row.sha256,
                                                                               row.size))  # fmt: skip
        except BadRequest:
            self._drop_if_current(row)
            log.warning("direct blob upload of %r by %s discarded: its sha256 is not %s", row.name, actor.username,
                        row.sha256)  # fmt: skip
            raise

    def direct_parts(self, row: BlobUpload) -> DirectParts | None:
        """Part URLs for the client to put the upload's bytes into the content store itself, when it takes them
        and the hub holds none of them already (an upload streamed through the hub goes on that way)."""
        if not self.store.content.direct() or file_size(self.store.upload_path(row)) > 0:
            return None
        return self.store.content.direct_upload(row.upload_id_hash, row.size)
