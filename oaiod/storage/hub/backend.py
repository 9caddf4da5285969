"""The ``Hub`` storage host: the oaiod hub's own blob store (``hub/blobs/``, see ``docs/hub-api.md``).

Speaks the object-service protocol through :mod:`oaiod.http`, logged in like every hub client
(:class:`~oaiod.http.OaioSessionAuth`). Choices a user may notice:

* put hashes the file first (the hub is told the sha256 up front and verifies it at finish) unless the caller
  knows it (``Transfer.sha256``: the engine's index, for a file whose stat is unchanged), then sends it
  inline with ``createUpload`` (≤ 64 KiB: two requests in all) or in chunks of :data:`CHUNK` bytes (64 MiB) to the
  ``putUrl`` the hub hands out. After a dropped connection or a 5xx it asks the hub how many bytes it holds
  and resumes there; a retried put of the same file (same key, sha256, size) in this process resumes the same
  upload. A different upload of the same name still in progress on the hub is cancelled: put overwrites.
* get asks ``start-download`` for a URL and the sha256, streams to a temporary file beside the target
  (continuing with ``Range`` after a dropped connection) and checks size and sha256 before the rename. A hub
  whose bucket clients may reach answers a pre-signed URL of the bucket instead, and pre-signed part URLs for
  a put (:mod:`oaiod.storage.hub.direct`).
* ``put_many``/``get_many`` move up to 1000 small files per request (:mod:`oaiod.storage.hub.batch`); files
  above 4 MiB, and every file on a hub without those routes, go one by one as above.
* copy is server-side (the hub only adds a name); ``copy_many`` sends up to :data:`COPY_BATCH` pairs per
  ``copy-many/`` request, one after the other (each is one transaction on the hub; an older hub without that
  route gets one ``copy/`` per pair). ``stat`` has the sha256 (``Capabilities.hashes``).
* HTTP answers map to the storage error tree at this boundary: 404 → ObjectNotFound, 401/403 →
  StoragePermissionDenied, 413/507 → QuotaExceeded, transport errors, 429 and other 5xx → TransientStorageError.
  This backend does not retry whole calls itself; the retry wrapper does.

Arguments: ``url`` (the hub's API base, e.g. ``http://127.0.0.1:8765/api/``), ``username``, ``password_env`` or
``password_file``, ``allow_insecure``. A daemon shares its own hub session with :meth:`HubBackend.sharing`
(the hub answers ``csh_args/Hub`` with just ``{"url"}``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import logging
import os
import queue
import random
import re
import secrets
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import requests.adapters

from oaiod.errors import ConfigError
from oaiod.http import (
    NO_RETRY,
    AuthPlugin,
    Conflict,
    HttpClient,
    HTTPStatusError,
    OaioSessionAuth,
    RemoteError,
    iter_bytes,
    json_of,
    server_base_url,
)
from oaiod.model import STAMP_FORMAT
from oaiod.secrets import secret_from_args
from oaiod.storage.base import (
    Backend,
    Capabilities,
    ObjectInfo,
    PathLike,
    Progress,
    Transfer,
    Transferred,
    check_prefix_pair,
)
from oaiod.storage.errors import (
    InvalidKey,
    ObjectNotFound,
    PermanentStorageError,
    QuotaExceeded,
    StorageError,
    StoragePermissionDenied,
    TransientStorageError,
)
from oaiod.storage.fsops import start_writeback
from oaiod.storage.hub.blocks import BLOCKS_FROM, FileBlocks, cut_file, get_by_blocks, put_by_blocks
from oaiod.storage.hub.direct import DIRECT_DOWNLOAD, DIRECT_UPLOAD, DirectClients, refused_direct_parts, send_parts
from oaiod.storage.keys import validate_key, validate_prefix
from oaiod.storage.toolkit import (
    CheckedPairs,
    atomic_local_file,
    check_args,
    checked_listing,
    secret_arg_names,
    truthy_arg,
    validate_pairs,
    validate_transfers,
)

log = logging.getLogger(__name__)

BLOBS = "hub/blobs/"
INLINE_MAX = 64 * 1024  #: objects up to this size go inline with createUpload
#: bytes per data/ request of a large upload. Resuming is byte-exact (from the hub's confirmed offset), so a
#: chunk only bounds one request; each request costs the hub a session and access check before bytes flow
#: again (8 MiB chunks ran at ~60 % of one stream's speed over loopback, 64 MiB at ~95 %).
CHUNK = 64 * 1024 * 1024
BLOCK = 1024 * 1024  #: bytes read from disk and sent per socket write
WRITE_AHEAD = 8  #: blocks of a download received ahead of the disk writes (:class:`_WriteBehind`)
WRITEBACK_EVERY = 8 * 1024 * 1024  #: bytes of a download written between starts of their writeback to disk
TIMEOUT = (10.0, 120.0)  #: connect, read (seconds between bytes)
RESUME_ATTEMPTS = 5  #: consecutive failed chunks before a put gives up (the retry wrapper may call again)
COPY_BATCH = 1000  #: pairs per ``copy-many/`` request (the hub's limit)
COPY_BATCH_BYTES = 2 * 1024 * 1024  #: and at most about this many bytes of keys (the hub takes 4 MiB of JSON)
COPY_EXCLUDE = 100_000  #: relative keys in the ``exclude`` of one ``copy-prefix/`` request (the hub's limit)
BATCH_BYTES = 16 * 1024 * 1024  #: file bytes per put-many request (the hub's body limit is 32 MiB by default)
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


class _BigBlockAdapter(requests.adapters.HTTPAdapter):
    """Sends request bodies in 1 MiB blocks instead of urllib3's 16 KiB (a large upload is otherwise CPU-bound)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", BLOCK)
        super().init_poolmanager(*args, **kwargs)


class _Slice:
    """``length`` bytes of ``file`` from ``start`` as a request body: sized, rewindable, reporting progress."""

    def __init__(self, file: IO[bytes], start: int, length: int, progress: Progress | None) -> None:
        self._file, self._start, self._length, self._progress = file, start, length, progress
        self._position = 0
        file.seek(start)

    def read(self, amount: int = -1) -> bytes:
        left = self._length - self._position
        if amount < 0 or amount > left:
            amount = left
        data = self._file.read(amount) if amount else b""
        self._position += len(data)
        if data and self._progress is not None:
            self._progress(len(data))
        return data

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = 0) -> int:
        self._position = position if whence == 0 else self._length if whence == 2 else self._position + position
        self._file.seek(self._start + self._position)
        return self._position

    def __len__(self) -> int:
        return self._length - self._position


@contextlib.contextmanager
def translate_remote_errors(key: str | None, what: str) -> Iterator[None]:
    """Turn :mod:`oaiod.http` errors raised in the block into the storage error tree."""
    try:
        yield
    except StorageError:
        raise
    except HTTPStatusError as exc:
        message = f"{what} {key!r}: {exc}"
        if exc.status == 404:
            raise ObjectNotFound(message, key=key) from exc
        if exc.status in (401, 403):
            raise StoragePermissionDenied(message, key=key) from exc
        if exc.status in (413, 507):
            raise QuotaExceeded(message, key=key) from exc
        if exc.transient:
            raise TransientStorageError(message, key=key) from exc
        raise PermanentStorageError(message, key=key) from exc
    except RemoteError as exc:
        error = TransientStorageError if exc.transient else PermanentStorageError
        raise error(f"{what} {key!r}: {exc}", key=key) from exc


def _large_file(path: str) -> bool:
    try:
        return os.stat(path).st_size >= BLOCKS_FROM
    except OSError:
        return False


def _sha256_of(file: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while block := file.read(4 * BLOCK):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


class _WriteBehind:
    """Writes a download's blocks to ``file`` in a thread of its own, so receiving (and hashing) the next block
    overlaps writing this one: from a hub on the same machine both cost about as much. At most
    :data:`WRITE_AHEAD` blocks wait; an error of the thread is raised by the next :meth:`write` or by
    :meth:`close`, which returns once every block is written."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._blocks: queue.Queue[bytes | None] = queue.Queue(WRITE_AHEAD)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="oaiod-hub-download-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        written = started = 0  # bytes written, and up to where their writeback was started
        while (block := self._blocks.get()) is not None:
            if self._error is None:
                try:
                    self._file.write(block)
                    written += len(block)
                    if written - started >= WRITEBACK_EVERY:  # the sync that makes it durable then waits for
                        self._file.flush()  # the last bytes only, not for the whole file
                        with contextlib.suppress(OSError, ValueError):  # a file without a descriptor: no hint
                            start_writeback(self._file.fileno(), started, written - started)
                        started = written
                except BaseException as exc:  # handed to the downloading thread
                    self._error = exc

    def write(self, block: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._blocks.put(block)

    def close(self, *, quiet: bool = False) -> None:
        self._blocks.put(None)
        self._thread.join()
        if self._error is not None and not quiet:
            raise self._error


class HubBackend(Backend):
    """Blobs in an oaiod hub, over a hub session.

    Build it from arguments with :meth:`from_args` (logs in itself), or on an existing session with
    :meth:`sharing` (a daemon passes its ``OaioServerApi.http``: the backend reuses that login and its cookies
    through the shared auth plugin, with its own connection pool). ``HubBackend(url, auth)`` takes any
    :class:`~oaiod.http.AuthPlugin` that logs in to that hub.
    """

    csh_id = "Hub"
    capabilities = Capabilities(
        server_side_copy=True,
        atomic_put=True,
        max_connections=4,
        multipart_threshold=INLINE_MAX,
        hashes=True,
        batch_copy=True,
        batch_transfer=True,
        prefix_copy=True,
    )

    def __init__(
        self,
        url: str,
        auth: AuthPlugin,
        *,
        headers: Mapping[str, str] | None = None,
        allow_insecure: bool = False,
        chunk_size: int = CHUNK,
    ) -> None:
        base_url = server_base_url(url, allow_insecure=allow_insecure)
        pool = self.capabilities.max_connections
        self.http = HttpClient(base_url, auth=auth, headers=headers, timeout=TIMEOUT, retry=NO_RETRY,
                               allow_insecure=allow_insecure, pool_size=pool)  # fmt: skip
        adapter = _BigBlockAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
        self.http.session.mount("http://", adapter)
        self.http.session.mount("https://", adapter)
        self.chunk_size = chunk_size
        self._uploads: dict[tuple[str, str, int], str] = {}  # (key, sha256, size) -> uploadId still unfinished
        self._lock = threading.Lock()
        self._copy_many_route = True  # False once the hub answered that it has no copy-many/ route
        self._copy_prefix_route = True  # False once the hub answered that it has no copy-prefix/ route
        self.batch_routes = True  # False once the hub answered that it has no put-many/ or get-many/ route
        self.batch_bytes = BATCH_BYTES  #: file bytes per put-many request (lowered when the hub takes less)
        self.direct = DirectClients(allow_insecure=allow_insecure, pool_size=pool)  # pre-signed URLs of its bucket
        self.direct_uploads = True  #: propose direct parts (False once the hub refused them: an older hub)
        self.block_routes = True  #: move large files by blocks (False once the hub answered it has no such routes)

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> HubBackend:
        checked = check_args(
            args, cls.csh_id, required=("url",), optional=("username", "allow_insecure", *secret_arg_names("password"))
        )
        username = checked.get("username") or ""
        if not username:
            raise ConfigError(
                "username", "Hub needs username and password_env or password_file (a daemon uses its own session)"
            )
        password = secret_from_args(checked, "password", required=True)
        assert password is not None
        return cls(checked["url"], OaioSessionAuth(username, password),
                   allow_insecure=truthy_arg(checked, "allow_insecure"))  # fmt: skip

    @classmethod
    def sharing(cls, client: HttpClient, args: Mapping[str, Any] | None = None) -> HubBackend:
        """A backend on the hub session of ``client``; ``args`` naming a ``username`` log in on their own."""
        if args and args.get("username"):
            return cls.from_args(args)
        context = {
            name: value if isinstance(value, str) else value.decode("latin-1")  # requests' own reading of bytes
            for name, value in client.session.headers.items()
            if name.lower().startswith("x-oaio-")
        }
        if client.auth is None:
            raise ConfigError("auth", "the shared hub client has no login to share")
        return cls(client.base_url, client.auth, headers=context, allow_insecure=True)  # its URL was checked

    def describe(self) -> str:
        return f"Hub {self.http.base_url}{BLOBS}"

    def close(self) -> None:
        self.http.close()
        self.direct.close()

    # -- requests -------------------------------------------------------------------------------------------------

    @staticmethod
    def _path(route: str, key: str) -> str:
        return f"{BLOBS}{route}/{quote(key, safe='/')}"

    def _json(self, method: str, path: str, key: str | None, what: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        with translate_remote_errors(key, what):
            answer = json_of(self.http.request(method, path, headers=headers, retry=NO_RETRY, **kwargs))
        if not isinstance(answer, dict):
            raise PermanentStorageError(f"{what} {key!r}: the hub answered {type(answer).__name__}, not an object")
        return answer

    def _own_url(self, url: Any, key: str) -> str:
        """A URL the hub handed out, accepted only on the hub's own origin (the session goes nowhere else)."""
        if not isinstance(url, str) or not self.http.is_own_origin(url):
            raise PermanentStorageError(f"the hub handed out a URL for {key!r} that is not on its own origin", key=key)
        return url

    # -- put ------------------------------------------------------------------------------------------------------

    def put_file(
        self, key: str, local_path: PathLike, *, progress: Progress | None = None, sha256: str | None = None
    ) -> None:
        """:meth:`Backend.put_file`; with ``sha256`` (the caller's hash of the content, ``Transfer.sha256``) the
        file is read once, not hashed first: the hub checks the bytes against it at finish and refuses others (a
        400, as :class:`PermanentStorageError`), so a wrong ``sha256`` never stores wrong content."""
        validate_key(key)
        with open(local_path, "rb") as file:
            if self.block_routes and os.fstat(file.fileno()).st_size >= BLOCKS_FROM:
                known = sha256 is not None and _SHA256.match(sha256) is not None
                cut = cut_file(file, whole=not known)  # the whole sha256 comes with the cut, or from the caller
                if known:  # (the hub checks the blocks make it up, as it checks a whole upload's)
                    cut = FileBlocks(str(sha256), cut.size, cut.blocks)
                if put_by_blocks(self, key, file, cut, progress):
                    return
                sha256, size = cut.sha256, cut.size
                file.seek(0)
            elif sha256 is None or not _SHA256.match(sha256):
                sha256, size = _sha256_of(file)
                file.seek(0)
            else:
                size = os.fstat(file.fileno()).st_size
            if size <= INLINE_MAX:
                upload_id = self._create_inline(key, sha256, file.read(), progress)
            else:
                upload_id, method = self._create_chunked(key, sha256, size)
                if DIRECT_UPLOAD in method:  # part URLs of the hub's bucket: the bytes bypass the hub
                    send_parts(self, key, (upload_id, sha256, size), method[DIRECT_UPLOAD], local_path, progress)
                else:
                    self._send(key, upload_id, self._own_url(method["putUrl"].get("url"), key), file, size, progress)
        self._json("POST", self._path("finish-upload", key), key, "cannot finish the upload of",
                   json={"uploadId": upload_id})  # fmt: skip
        with self._lock:
            self._uploads.pop((key, sha256, size), None)

    def _create(self, key: str, upload_id: str, sha256: str, size: int, methods: dict[str, Any]) -> dict[str, Any]:
        """createUpload; a different upload of ``key`` still in progress (409) is cancelled once."""
        body = {"uploadId": upload_id, "sha256": sha256, "size": size, "proposedUploadMethods": methods}
        for attempt in (1, 2):
            try:
                with translate_remote_errors(key, "cannot start the upload of"):
                    answer = json_of(self.http.put(self._path("upload", key), json=body, retry=NO_RETRY))
                if not isinstance(answer, dict):  # as _json refuses it
                    raise PermanentStorageError(f"cannot start the upload of {key!r}: the hub answered "
                                                f"{type(answer).__name__}, not an object", key=key)  # fmt: skip
                return answer
            except PermanentStorageError as exc:
                if attempt == 2 or not isinstance(exc.__cause__, Conflict):
                    raise
                log.info("hub upload of %r: another upload of it is unfinished; cancelling it to start anew", key)
                self._json("DELETE", self._path("upload", key), key, "cannot cancel the unfinished upload of")
        raise AssertionError("unreachable")

    def _create_inline(self, key: str, sha256: str, data: bytes, progress: Progress | None) -> str:
        upload_id = secrets.token_urlsafe(24)
        inline = {"contentType": "application/octet-stream", "objectData": base64.b64encode(data).decode()}
        answer = self._create(key, upload_id, sha256, len(data), {"dataInline": inline})
        if answer.get("uploadMethod") != {"dataInline": True}:
            raise PermanentStorageError(f"the hub did not take {key!r} inline: {answer.get('uploadMethod')!r}")
        if progress is not None and data:
            progress(len(data))
        return upload_id

    def _create_chunked(self, key: str, sha256: str, size: int) -> tuple[str, dict[str, Any]]:
        """createUpload proposing a putUrl (and direct parts, unless the hub refused them once): ``(uploadId,
        the uploadMethod answered)``; resumes this process's unfinished upload of the same file."""
        with self._lock:
            upload_id = self._uploads.get((key, sha256, size)) or secrets.token_urlsafe(24)
        methods: dict[str, Any] = {"putUrl": {"contentType": "application/octet-stream", "contentLength": size}}
        if self.direct_uploads:
            methods[DIRECT_UPLOAD] = {"contentLength": size}
        try:
            answer = self._create(key, upload_id, sha256, size, methods)
        except PermanentStorageError as exc:
            if DIRECT_UPLOAD not in methods or not refused_direct_parts(exc):
                raise
            log.info("%s does not know direct uploads (an older hub); uploading through it", self.describe())
            self.direct_uploads = False
            return self._create_chunked(key, sha256, size)
        method = answer.get("uploadMethod")
        if not isinstance(method, dict) or not isinstance(method.get(DIRECT_UPLOAD, method.get("putUrl")), dict):
            raise PermanentStorageError(f"the hub offered no putUrl for {key!r}: {method!r}", key=key)
        with self._lock:
            self._uploads[(key, sha256, size)] = upload_id
        return upload_id, method

    def _send(
        self, key: str, upload_id: str, data_url: str, file: IO[bytes], size: int, progress: Progress | None
    ) -> None:
        """Send the file in chunks from what the hub holds; resume from its confirmed offset after a failure."""
        parts = urlsplit(data_url)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        offset, failures = self._received(key, upload_id), 0
        while offset < size:
            length = min(self.chunk_size, size - offset)
            body = _Slice(file, offset, length, progress)
            headers = {"Content-Type": "application/octet-stream"}
            try:
                with translate_remote_errors(key, "cannot upload"):
                    answer = json_of(self.http.put(url, params={"uploadId": upload_id, "offset": offset}, data=body,
                                                   headers=headers, retry=NO_RETRY))  # fmt: skip
                offset, failures = self._offset(answer, key), 0
            except (TransientStorageError, PermanentStorageError) as exc:
                resumable = isinstance(exc, TransientStorageError) or isinstance(exc.__cause__, Conflict)
                failures += 1
                if not resumable or failures >= RESUME_ATTEMPTS:
                    raise
                delay = random.uniform(0, min(10.0, 0.2 * 2**failures))
                log.warning("hub upload of %r broke at byte %d (%s); resuming in %.1f s", key, offset, exc, delay)
                time.sleep(delay)
                offset = self._received(key, upload_id)

    def _received(self, key: str, upload_id: str) -> int:
        answer = self._json("GET", self._path("upload-status", key), key, "cannot ask how much arrived of",
                            params={"uploadId": upload_id})  # fmt: skip
        return self._offset(answer, key)

    @staticmethod
    def _offset(answer: Any, key: str) -> int:
        received = answer.get("received") if isinstance(answer, dict) else None
        if not isinstance(received, int) or isinstance(received, bool) or received < 0:
            raise PermanentStorageError(f"the hub answered no byte count for the upload of {key!r}", key=key)
        return received

    # -- batches -------------------------------------------------------------------------------------------------

    def put_many(
        self, items: Sequence[Transfer], *, progress: Progress | None = None, unpublished: bool = False
    ) -> list[Transferred]:
        """Small files in ``put-many/`` requests, large ones through :meth:`put_file` (see :mod:`.batch`); the
        hub stores each atomically whatever ``unpublished`` says (it costs it nothing more)."""
        from oaiod.storage.hub.batch import BatchPut

        return BatchPut(self, validate_transfers(items), progress).run()

    def get_many(self, items: Sequence[Transfer], *, progress: Progress | None = None) -> list[Transferred]:
        """``get-many/`` requests until every item has a result; large files through :meth:`get_file`."""
        from oaiod.storage.hub.batch import BatchGet

        return BatchGet(self, validate_transfers(items), progress).run()

    def forget_block_routes(self) -> None:
        """The hub has no block routes (an older hub): large files move whole from now on."""
        if self.block_routes:
            log.info("%s has no block routes (an older hub); moving large files whole", self.describe())
        self.block_routes = False

    def forget_batch_routes(self) -> None:
        """The hub has no batch routes (an older hub): transfer item by item from now on."""
        if self.batch_routes:
            log.info("%s has no put-many/get-many routes (an older hub); transferring one file per request",
                     self.describe())  # fmt: skip
        self.batch_routes = False

    # -- get, stat, list ------------------------------------------------------------------------------------------

    def get_file(
        self,
        key: str,
        local_path: PathLike,
        *,
        progress: Progress | None = None,
        fsync: bool = True,
        basis: str | None = None,
    ) -> None:
        """As :meth:`Backend.get_file`; with ``basis`` (a local file that probably shares blocks with the object)
        a content stored by blocks is rebuilt from it and the blocks it lacks (:mod:`.blocks`)."""
        self.get_file_verified(key, local_path, progress=progress, fsync=fsync, basis=basis)

    def get_file_verified(
        self,
        key: str,
        local_path: PathLike,
        *,
        progress: Progress | None = None,
        fsync: bool = True,
        basis: str | None = None,
    ) -> str:
        """:meth:`get_file`, answering the sha256 the written bytes were checked against while they streamed in
        (``get_many`` reports it without reading the file back)."""
        validate_key(key)
        if basis is not None and self.block_routes and _large_file(basis):
            try:
                rebuilt = get_by_blocks(self, key, local_path, basis, progress, fsync)
                if rebuilt is not None:
                    return rebuilt
            except (OSError, TransientStorageError) as exc:  # the basis went or changed: fetch it whole
                log.info("hub download of %r by blocks from %s failed (%s); downloading it whole", key, basis, exc)
        accepted = {"acceptDownloadMethods": {DIRECT_DOWNLOAD: True, "getUrl": True, "simple": True}}
        answer = self._json("PUT", self._path("start-download", key), key, "cannot download", json=accepted)
        if answer.get("method") == DIRECT_DOWNLOAD:  # a pre-signed URL of the hub's bucket: no hub session there
            client, url = self.direct.for_url(answer.get("url"), key)
        else:
            client, url = self.http, self._own_url(answer.get("url"), key)
        sha256 = (answer.get("hashes") or {}).get("sha256") if isinstance(answer.get("hashes"), dict) else None
        size = answer.get("size")
        if not isinstance(sha256, str) or not _SHA256.match(sha256) or not isinstance(size, int):
            raise PermanentStorageError(f"start-download of {key!r} gave no valid sha256 and size", key=key)
        with atomic_local_file(local_path, fsync=fsync) as file:
            writer = _WriteBehind(file)
            try:
                digest, received = self._download(writer, url, key, sha256, progress, client)
            except BaseException:
                writer.close(quiet=True)
                raise
            writer.close()
            if received != size or digest != sha256:
                raise TransientStorageError(
                    f"download of {key!r} gave {received} bytes with sha256 {digest}, "
                    f"not {size} bytes with {sha256}; nothing was written",
                    key=key,
                )
        return sha256

    def _download(
        self, file: _WriteBehind, url: str, key: str, sha256: str, progress: Progress | None, client: HttpClient
    ) -> tuple[str, int]:
        """Stream ``url`` into ``file`` with ``client`` (the hub's, or a bucket's); after a dropped connection
        continue with ``Range`` where it broke. The sha256 digest and size of what was written."""
        digest, received, failures = hashlib.sha256(), 0, 0
        while True:
            try:
                with translate_remote_errors(key, "cannot download"):
                    headers = {"Range": f"bytes={received}-"} if received else {}
                    response = client.get(url, stream=True, retry=NO_RETRY, headers=headers)
                    if response.headers.get("X-Oaiod-Sha256", sha256) != sha256 or (
                        received and response.status_code != 206
                    ):
                        response.close()
                        raise TransientStorageError(f"{key!r} changed on the hub during the download", key=key)
                    for chunk in iter_bytes(response, BLOCK):
                        file.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
                return digest.hexdigest(), received
            except TransientStorageError as exc:
                failures += 1
                if failures >= RESUME_ATTEMPTS or "changed on the hub" in str(exc):
                    raise
                delay = random.uniform(0, min(10.0, 0.2 * 2**failures))
                log.warning("hub download of %r broke at byte %d (%s); resuming in %.1f s", key, received, exc, delay)
                time.sleep(delay)

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        return self._info(self._json("GET", self._path("metadata", key), key, "cannot stat"), key)

    @staticmethod
    def _info(item: Any, key: str | None = None) -> ObjectInfo:
        name = item.get("name") if isinstance(item, dict) else None
        size, sha256, created = (item.get(field) for field in ("size", "sha256", "created"))
        if not isinstance(name, str) or not isinstance(size, int) or size < 0:
            raise PermanentStorageError(f"the hub described {key or name!r} without a valid name and size", key=key)
        if key is not None and name != key:
            raise PermanentStorageError(f"the hub answered for {name[:200]!r}, not {key!r}", key=key)
        mtime = None
        with contextlib.suppress(TypeError, ValueError):
            mtime = _dt.datetime.strptime(created, STAMP_FORMAT).replace(tzinfo=_dt.UTC).timestamp()
        valid_sha = isinstance(sha256, str) and _SHA256.match(sha256) is not None
        return ObjectInfo(key=name, size=size, sha256=sha256 if valid_sha else None, mtime=mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        return checked_listing(self._pages(prefix), self.describe())

    def _pages(self, prefix: str) -> Iterator[ObjectInfo]:
        after: int | None = 0
        while after is not None:
            answer = self._json("GET", f"{BLOBS}list/", prefix, "cannot list",
                                params={"prefix": prefix, "after": after})  # fmt: skip
            items, following = answer.get("items"), answer.get("next")
            if not isinstance(items, list) or not (following is None or isinstance(following, int)):
                raise PermanentStorageError(f"the hub's listing of {prefix!r} is malformed", key=prefix)
            for item in items:
                yield self._info(item)
            if following is not None and following <= after:
                raise PermanentStorageError(f"the hub's listing of {prefix!r} does not advance", key=prefix)
            after = following

    # -- delete, copy ---------------------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        validate_key(key)
        with contextlib.suppress(ObjectNotFound):  # nothing readable there: nothing to delete
            self._json("DELETE", self._path("object", key), key, "cannot delete")

    def delete_prefix(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        if not prefix:
            raise InvalidKey("prefix", "refusing to delete everything; give a non-empty prefix")
        with contextlib.suppress(ObjectNotFound):
            self._json("DELETE", self._path("prefix", prefix), prefix, "cannot delete")

    def copy(self, src: str, dst: str) -> None:
        validate_key(src, "src")
        validate_key(dst, "dst")
        self._json("POST", f"{BLOBS}copy/", src, "cannot copy", json={"src": src, "dst": dst})

    def copy_many(self, pairs: Iterable[tuple[str, str]], *, progress: Progress | None = None) -> None:
        checked = validate_pairs(pairs)
        for batch in _copy_batches(checked):
            if not self._copy_many_route:
                super().copy_many(batch, progress=progress)
                continue
            self._copy_batch(batch)
            if progress is not None:
                progress(len(batch))

    def copy_prefix(self, src: str, dst: str, *, exclude: Collection[str] = frozenset()) -> int:
        """One ``copy-prefix/`` request whose body is the two folders and ``exclude``: the hub names the objects
        again in its database, whatever the folder holds. An ``exclude`` beyond one request's bounds, or a hub
        without the route (an older hub: 404 naming nothing), goes the default way (a listing and ``copy-many/``)."""
        src, dst = check_prefix_pair(src, dst)
        skipped = sorted({validate_key(key, "exclude") for key in exclude})
        if not self._copy_prefix_route or len(skipped) > COPY_EXCLUDE or _weight(skipped) > COPY_BATCH_BYTES:
            return super().copy_prefix(src, dst, exclude=skipped)
        body = {"src": src, "dst": dst, "exclude": skipped}
        try:
            answer = self._json("POST", f"{BLOBS}copy-prefix/", src, "cannot copy", json=body)
        except StorageError as exc:
            name = _refused_name(exc)
            if name is None and isinstance(exc, ObjectNotFound):
                log.info("%s has no copy-prefix/ route (an older hub); listing and copying instead", self.describe())
                self._copy_prefix_route = False
                return super().copy_prefix(src, dst, exclude=skipped)
            if name not in (src, dst):
                raise
            raise type(exc)(f"cannot copy {src!r} to {dst!r}: {exc.__cause__}", key=name) from exc
        copied = answer.get("copied")
        if not isinstance(copied, int) or isinstance(copied, bool) or copied < 0:
            raise PermanentStorageError(f"the hub's copy-prefix answer for {src!r} has no count", key=src)
        return copied

    def _copy_batch(self, batch: CheckedPairs) -> None:
        """One ``copy-many/`` request: all pairs copied, or none. A refusal names the key at fault (the error's
        ``key``: a missing source for 404); a 404 naming nothing means a hub without the route: the batch then goes
        one ``copy/`` per pair."""
        body = {"pairs": [{"src": src, "dst": dst} for src, dst in batch]}
        try:
            self._json("POST", f"{BLOBS}copy-many/", batch[0][0], "cannot copy", json=body)
        except StorageError as exc:
            name = _refused_name(exc)
            if name is None and isinstance(exc, ObjectNotFound):
                log.info("%s has no copy-many/ route (an older hub); copying one pair per request", self.describe())
                self._copy_many_route = False
                Backend.copy_many(self, batch)
                return
            if name is None:
                raise
            if not any(name in pair for pair in batch):
                raise PermanentStorageError(f"the hub's copy answer names {str(name)[:200]!r}, not a key sent") from exc
            raise type(exc)(f"cannot copy {name!r}: {exc.__cause__}", key=name) from exc


def _refused_name(exc: StorageError) -> Any:
    """The key a hub's refusal names (its JSON answer's ``name``); None when it names none — a 404 naming nothing
    is a hub without the route."""
    answer = getattr(exc.__cause__, "body", None)
    return answer.get("name") if isinstance(answer, dict) else None


def _weight(keys: Sequence[str]) -> int:
    """About the bytes of ``keys`` in a JSON body."""
    return sum(len(key.encode()) + 4 for key in keys)


def _copy_batches(pairs: CheckedPairs) -> Iterator[CheckedPairs]:
    """``pairs`` in requests of at most :data:`COPY_BATCH` pairs and about :data:`COPY_BATCH_BYTES` of keys."""
    batch = CheckedPairs()
    size = 0
    for src, dst in pairs:
        weight = len(src.encode()) + len(dst.encode()) + 24
        if batch and (len(batch) == COPY_BATCH or size + weight > COPY_BATCH_BYTES):
            yield batch
            batch, size = CheckedPairs(), 0
        batch.append((src, dst))
        size += weight
    if batch:
        yield batch
