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

import threading
from typing import Any
from urllib.parse import urlsplit

from oaiod.errors import ConfigError
from oaiod.http import NO_RETRY, HttpClient
from oaiod.storage.errors import PermanentStorageError

DIRECT_DOWNLOAD = "directGetUrl"  #: the download method a client announces in acceptDownloadMethods
DIRECT_UPLOAD = "directParts"  #: the upload method a client proposes in proposedUploadMethods
TIMEOUT = (10.0, 120.0)


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
