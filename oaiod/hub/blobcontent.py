"""Where the hub's blob store keeps the bytes: one immutable object per sha256, in a folder or an S3 bucket.

The seam between the blob store's names, rights and uploads (the database, :mod:`oaiod.hub.blobstore`) and its
content. A :class:`ContentStore` knows nothing of names, users or locks: it stores, reads and removes content by
sha256, and the blob store decides when (under its lock, after its commits). Implementations:

- :class:`LocalContent` — ``<data_dir>/blobs/sha256/ab/abcd…`` (the embedded default);
- :class:`oaiod.hub.blobcontent_s3.S3Content` — ``<prefix>sha256/abcd…`` in an S3-compatible bucket, which may also
  hand out pre-signed URLs so clients transfer bytes directly (:meth:`ContentStore.direct`).

Unfinished uploads are staged on the receiving hub's disk (``<data_dir>/blobs/uploads/``) whatever the content
store, and :meth:`ContentStore.place` moves them in once their hash is verified.

Errors (what a caller catches)::

    HubError                         oaiod.hub.errors
    ├── NotFound                     ContentMissing: no content under that sha256
    ├── InsufficientStorage          507: the disk or the bucket is full
    └── StoreUnavailable             503: the bucket did not answer or refused the hub (retry later)

An S3 store translates botocore's errors where they enter, through :mod:`oaiod.storage.s3`'s translation.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from oaiod.errors import ConfigError
from oaiod.hub.errors import InsufficientStorage, NotFound
from oaiod.hub.settings import BlobStoreSettings
from oaiod.storage.fsops import sync_filesystem


class ContentMissing(NotFound):
    """No content under this sha256 (its last name went and it was removed)."""


@dataclass(frozen=True, slots=True)
class DirectParts:
    """Pre-signed ``PUT`` URLs for the parts of a direct upload: part ``n`` (from 1) is bytes
    ``(n-1)*part_size`` up to ``n*part_size`` of the file, sent to ``urls[n-1]`` until ``expires`` (a stamp)."""

    part_size: int
    urls: list[str]
    expires: str


@dataclass(frozen=True, slots=True)
class DirectUrl:
    """A pre-signed URL a client uses without the hub: ``method`` on ``url`` with ``headers``, until ``expires``
    (a stamp)."""

    url: str
    headers: dict[str, str]
    expires: str


class ContentStore(abc.ABC):
    """Immutable content by sha256 (thread-safe; every method may block on I/O, so call it from a worker thread).

    Contract: content under a sha256 is exactly the bytes whose sha256 it is (the caller verified them before
    :meth:`place`); it never changes in place; :meth:`remove` is idempotent. Nothing here is transactional with
    the database: the blob store orders the calls around its commits."""

    kind: str = ""  #: ``local`` or ``s3`` (``--blob-store``)

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the content lives, for the log (no credentials)."""

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool:
        """True when the content is stored."""

    @abc.abstractmethod
    def place(self, staged: Sequence[tuple[str, Path]]) -> None:
        """Store each ``(sha256, file)`` as that content and consume the file (it is gone afterwards, moved or
        removed because the content was stored already). The files' hashes were verified by the caller. Durable
        on return: a crash afterwards keeps every placed content."""

    @abc.abstractmethod
    def open(self, sha256: str, start: int = 0) -> BinaryIO:
        """The content from byte ``start``, as a file to read (close it); :class:`ContentMissing` when absent."""

    @abc.abstractmethod
    def size(self, sha256: str) -> int | None:
        """The stored content's size in bytes; None when it is absent."""

    def exists_many(self, sha256s: Sequence[str]) -> list[bool]:
        """:meth:`exists` of each (a store may ask in parallel)."""
        return [self.exists(sha256) for sha256 in sha256s]

    @abc.abstractmethod
    def remove(self, sha256: str) -> None:
        """Remove the content; nothing happens when it is absent."""

    def remove_many(self, sha256s: Sequence[str]) -> None:
        """:meth:`remove` of each (a store may batch them)."""
        for sha256 in sha256s:
            self.remove(sha256)

    @abc.abstractmethod
    def iter_content(self) -> Iterator[str]:
        """The sha256 of every stored content (administration, migration and tests)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise when the store cannot take new content now (``/readyz``)."""

    def direct(self) -> bool:
        """True when clients may transfer bytes with the store directly (:meth:`download_url`, :meth:`upload_url`)."""
        return False

    def download_url(self, sha256: str, size: int) -> DirectUrl | None:
        """A short-lived URL that GETs the content (``Range`` honoured), or None: the hub streams it."""
        return None

    def direct_upload(self, stage: str, size: int) -> DirectParts | None:
        """Part URLs for a client to upload ``size`` bytes of the upload staged as ``stage`` (its upload id's
        hash) straight into the store, resuming the parts already there; None when the store does not do that."""
        return None

    def direct_received(self, stage: str) -> int | None:
        """Bytes of the direct upload ``stage`` held in whole parts from the first on; None when there is none."""
        return None

    def finish_direct(self, stage: str, sha256: str, size: int) -> None:
        """Assemble the direct upload ``stage``, check its bytes against ``sha256`` (reading them back: the store
        does not tell a whole object's sha256) and store them as that content; the staged parts go. A mismatch
        raises :class:`~oaiod.hub.errors.BadRequest` and drops them. Call it while the content is held."""
        raise NotImplementedError(f"{type(self).__name__} takes no direct uploads")

    def drop_direct(self, stages: Sequence[str]) -> None:  # noqa: B027 - a store without direct uploads has none
        """Forget direct uploads (cancelled, expired, their object deleted); nothing happens for unknown ones."""

    def stray_direct(self, known: set[str], older_than: float) -> int:
        """Drop direct uploads not in ``known`` started more than ``older_than`` seconds ago; how many."""
        return 0

    def local_path(self, sha256: str) -> Path | None:
        """The content's file when it is one on this machine (the hub then sends it with ``sendfile``-like
        responses and ``Range``), else None."""
        return None

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to free
        """Free connections (the hub stops)."""


class LocalContent(ContentStore):
    """Content in ``<root>/sha256/ab/<sha256>`` on the hub's disk; placing is a rename of the staged file."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root / "sha256"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def describe(self) -> str:
        return f"folder {self.root}"

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def local_path(self, sha256: str) -> Path | None:
        return self.path(sha256)

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def place(self, staged: Sequence[tuple[str, Path]]) -> None:
        """Make the staged bytes durable, rename each file into place, make the renames durable: a content file
        is never there with bytes that may still be lost (a later upload of the same content would trust it).
        One file: fsyncs; more: one ``syncfs`` before and one after the renames (else fsyncs)."""
        new = [(sha256, source) for sha256, source in staged if not self._drop_if_stored(sha256, source)]
        if not new:
            return
        batch = len(new) > 1 and sync_filesystem(self.root)
        if not batch:
            for _sha256, source in new:
                with open(source, "rb") as file:
                    os.fsync(file.fileno())
        for folder in {self.path(sha256).parent for sha256, _source in new}:  # once per folder, not per file
            _disk_full_as_507(lambda: folder.mkdir(exist_ok=True, mode=0o700))  # noqa: B023 - called at once
        for sha256, source in new:
            os.replace(source, self.path(sha256))
        if batch and sync_filesystem(self.root):
            return
        for folder in {self.path(sha256).parent for sha256, _source in new}:
            fsync_folder(folder)

    def _drop_if_stored(self, sha256: str, source: Path) -> bool:
        """True (and the staged file removed) when the content is stored already; FileNotFoundError when the
        staged file went (its upload was dropped meanwhile)."""
        if not self.path(sha256).exists():
            source.stat()
            return False
        with contextlib.suppress(FileNotFoundError):
            source.unlink()
        return True

    def open(self, sha256: str, start: int = 0) -> BinaryIO:
        try:
            file = open(self.path(sha256), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise ContentMissing(f"no content {sha256} in the blob store") from None
        file.seek(start)
        return file

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()

    def iter_content(self) -> Iterator[str]:
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir():
                yield from sorted(path.name for path in folder.iterdir() if len(path.name) == 64)

    def check(self) -> None:
        descriptor, name = tempfile.mkstemp(prefix=".readyz-", dir=self.root)
        os.close(descriptor)
        os.unlink(name)


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_full_as_507(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("the hub's disk is full") from None
        raise


def open_content_store(settings: BlobStoreSettings, data_dir: Path) -> ContentStore:
    """The content store ``settings`` describe; ``local`` under ``<data_dir>/blobs``."""
    if settings.kind == "local":
        return LocalContent(data_dir / "blobs")
    if settings.kind != "s3":
        raise ConfigError("blob_store", f"is local or s3, not {settings.kind!r}")
    try:
        from oaiod.hub.blobcontent_s3 import S3Content
    except ImportError:
        raise ConfigError("blob_store", "s3 needs boto3: pip install 'oaiod[s3]'") from None
    return S3Content(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint,
        region=settings.s3_region,
        prefix=settings.s3_prefix,
        credentials_file=settings.s3_credentials_file,
        direct=settings.s3_direct,
        public_endpoint=settings.s3_public_endpoint,
        allow_http=settings.s3_allow_http,
    )
