"""Direct transfers of the ``Hub`` storage host: bytes to and from the hub's bucket on pre-signed URLs.

A hub whose content store is an S3 bucket reachable by clients (``hub serve --s3-direct``) answers a negotiation
that announces ``directGetUrl`` (download) or proposes ``directParts`` (upload) with short-lived pre-signed URLs,
minted after its rights check; the bytes then bypass the hub. This module is the client's side of that, kept
apart from :mod:`oaiod.storage.hub` so the hub's session can never reach another origin:

- each origin gets its own :class:`~oaiod.http.HttpClient` with no auth plugin, no cookies and no hub context
  headers (the bucket may share a host name with the hub: cookies ignore ports);
- a pre-signed URL must be https, or plain http to a loopback host or where the backend allows insecure URLs;
- URLs are logged masked (their signature and credential parameters are secret-named).

Errors leave as the storage error tree, through :func:`oaiod.storage.hub.translate_remote_errors`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from oaiod.errors import ConfigError
from oaiod.http import NO_RETRY, HttpClient, HTTPStatusError
from oaiod.storage.base import PathLike, Progress
from oaiod.storage.errors import PermanentStorageError, StorageError, StoragePermissionDenied, TransientStorageError

if TYPE_CHECKING:
    from oaiod.storage.hub import HubBackend

log = logging.getLogger("oaiod.storage.hub")

DIRECT_DOWNLOAD = "directGetUrl"  #: the download method a client announces in acceptDownloadMethods
DIRECT_UPLOAD = "directParts"  #: the upload method a client proposes in proposedUploadMethods
TIMEOUT = (10.0, 120.0)
ATTEMPTS = 5  #: consecutive rounds with a failed part before a put gives up (the retry wrapper may call it again)
PARALLEL = 4  #: parts put at once (one connection each; a bucket takes parts in any order)


class DirectClients:
    """One plain :class:`HttpClient` per bucket origin, made on first use (thread-safe)."""

    def __init__(self, *, allow_insecure: bool, pool_size: int) -> None:
        self.allow_insecure = allow_insecure
        self.pool_size = pool_size
        self._clients: dict[str, HttpClient] = {}
        self._lock = threading.Lock()

    def for_url(self, url: Any, key: str) -> tuple[HttpClient, str]:
        """The client for a pre-signed ``url`` the hub handed out, and the URL; refused unless it is safe."""
        if not isinstance(url, str):
            raise PermanentStorageError(f"the hub handed out no direct URL for {key!r}", key=key)
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}/"
        with self._lock:
            client = self._clients.get(origin)
            if client is None:
                try:
                    client = HttpClient(origin, timeout=TIMEOUT, retry=NO_RETRY, allow_insecure=self.allow_insecure,
                                        pool_size=self.pool_size)  # fmt: skip
                except ConfigError as exc:
                    reason = f"the hub's direct URL for {key!r} is not safe: {exc}"
                    raise PermanentStorageError(reason, key=key) from exc
                self._clients[origin] = client
        return client, url

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def refused_direct_parts(exc: PermanentStorageError) -> bool:
    """True when createUpload was refused because the hub does not know the ``directParts`` method (an older
    hub answers 400 naming ``proposedUploadMethods``)."""
    cause = exc.__cause__
    body = cause.body if isinstance(cause, HTTPStatusError) and cause.status == 400 else None
    return isinstance(body, dict) and body.get("field") == "proposedUploadMethods" and DIRECT_UPLOAD in str(body)


def _checked(parts: Any, size: int, key: str) -> tuple[int, list[str]]:
    part_size, urls = (parts.get("partSize"), parts.get("urls")) if isinstance(parts, dict) else (None, None)
    if (
        not isinstance(part_size, int)
        or part_size <= 0
        or not isinstance(urls, list)
        or len(urls) != max(1, -(-size // part_size))
    ):
        raise PermanentStorageError(f"the hub's direct upload of {key!r} is malformed", key=key)
    return part_size, urls


def send_parts(
    backend: HubBackend,
    key: str,
    upload: tuple[str, str, int],
    parts: Any,
    local_path: PathLike,
    progress: Progress | None,
) -> None:
    """Put the file at ``local_path`` into the hub's bucket on the part URLs the hub handed out (``upload`` is its
    ``(uploadId, sha256, size)``), :data:`PARALLEL` parts at once, from the first part the hub does not hold. After
    a failure it asks the hub what it holds and goes on from there; an expired URL (403) gets fresh ones by
    renewing the upload. The caller finishes the upload (the hub verifies the sha256)."""
    upload_id, sha256, size = upload
    part_size, urls = _checked(parts, size, key)
    failures = 0
    while (offset := backend._received(key, upload_id)) < size:
        first = offset // part_size
        send = partial(_send_part, backend, key, local_path, size, part_size, progress)
        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="hub-direct-put") as pool:
            outcomes = list(pool.map(send, range(first, len(urls)), urls[first:]))
        errors = [error for error in outcomes if error is not None]
        if not errors:
            return
        failures += 1
        if failures >= ATTEMPTS or not all(isinstance(error, _RESUMABLE) for error in errors):
            raise errors[0]
        if any(isinstance(error, StoragePermissionDenied) for error in errors):  # expired URLs: the same upload
            _upload_id, method = backend._create_chunked(key, sha256, size)
            part_size, urls = _checked(method.get(DIRECT_UPLOAD), size, key)
        delay = random.uniform(0, min(10.0, 0.2 * 2**failures))
        log.warning("direct upload of %r: %d parts failed (%s); resuming in %.1f s", key, len(errors), errors[0], delay)
        time.sleep(delay)


_RESUMABLE = (TransientStorageError, StoragePermissionDenied)


def _send_part(
    backend: HubBackend,
    key: str,
    local_path: PathLike,
    size: int,
    part_size: int,
    progress: Progress | None,
    index: int,
    url: str,
) -> StorageError | None:
    """Put part ``index`` (from 0) on its own file handle; the storage error it failed with, or None."""
    from oaiod.storage.hub.backend import _Slice, translate_remote_errors

    start = index * part_size
    length = min(part_size, size - start)
    try:
        client, checked = backend.direct.for_url(url, key)
        with open(local_path, "rb") as file, translate_remote_errors(key, "cannot upload"):
            client.put(checked, data=_Slice(file, start, length, progress), retry=NO_RETRY)
    except StorageError as exc:
        return exc
    return None
