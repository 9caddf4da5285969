"""The ``WebDav`` storage host: any WebDAV server (Nextcloud, ownCloud, Koofr, Apache mod_dav, wsgidav…).

Objects are files under ``url`` + ``root_folder``; each key component is percent-encoded as UTF-8, so non-ASCII
oaio ids round-trip exactly. Choices a user may notice:

* Atomic put: the file is PUT to a temporary name in the target collection (``.oaiod-tmp-…``), then MOVEd over
  the key with ``Overwrite: T``. One extra small request per upload buys the guarantee on every server, not
  only on those that already write PUTs to a temp file. A failed MOVE deletes the temporary file.
* Missing parent collections are created level by level with MKCOL (405 means "exists"); the collections
  known to exist are cached per backend, and a 409 on PUT clears the cache and retries once.
* Listing walks the tree with PROPFIND ``Depth: 1`` (``infinity`` is often disabled on servers); hrefs outside
  the root or with unsafe names are skipped with a warning. XML with a DOCTYPE is refused (no entity tricks).
* ``copy`` is the server's COPY to a temporary name, then MOVE, so it is atomic as well.
* Plain ``http://`` is refused for non-loopback hosts unless ``allow_http=true``.

Arguments: ``url``, ``root_folder``, ``username``, ``password`` / ``password_env`` / ``password_file``,
``allow_http``. Only this module touches ``requests``; its errors become the storage error tree here.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote, unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from oaiod import __version__
from oaiod.secrets import secret_from_args
from oaiod.storage.base import Backend, Capabilities, ObjectInfo, PathLike, Progress
from oaiod.storage.errors import (
    ObjectNotFound,
    PermanentStorageError,
    QuotaExceeded,
    StorageError,
    StoragePermissionDenied,
    TransientStorageError,
)
from oaiod.storage.keys import join_key, temp_name, validate_key, validate_prefix
from oaiod.storage.toolkit import (
    CHUNK_SIZE,
    atomic_local_file,
    check_args,
    checked_listing,
    require_https,
    secret_arg_names,
    truthy_arg,
)

log = logging.getLogger(__name__)

TIMEOUT = (10.0, 120.0)  # connect, read (seconds between bytes)
TRANSIENT_STATUS = {408, 423, 425, 429, 500, 502, 503, 504, 509}
DAV = "{DAV:}"
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/></d:prop></d:propfind>"
)
MAX_PROPFIND_BYTES = 64 * 1024 * 1024


class _BigBlockAdapter(HTTPAdapter):
    """Sends request bodies in 1 MiB blocks instead of urllib3's 16 KiB (a large upload is otherwise CPU-bound)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", CHUNK_SIZE)
        super().init_poolmanager(*args, **kwargs)


class _UploadReader:
    """A file read in chunks for a request body, reporting each chunk to ``progress``; ``len`` is its size."""

    def __init__(self, file: IO[bytes], size: int, progress: Progress | None) -> None:
        self._file, self._size, self._progress = file, size, progress

    def read(self, amount: int = -1) -> bytes:
        chunk = self._file.read(amount)
        if chunk and self._progress is not None:
            self._progress(len(chunk))
        return chunk

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_SIZE):
            yield chunk


def raise_for_status(response: requests.Response, key: str | None, what: str) -> None:
    """Map an HTTP error status to the storage error tree; a 2xx passes."""
    status = response.status_code
    if status < 300:
        return
    message = f"{what} {key!r}: HTTP {status} {response.reason}"
    if status in (401, 403):
        raise StoragePermissionDenied(message, key=key)
    if status in (404, 410):
        raise ObjectNotFound(message, key=key)
    if status == 507:
        raise QuotaExceeded(message, key=key)
    if status in TRANSIENT_STATUS:
        raise TransientStorageError(message, key=key)
    raise PermanentStorageError(message, key=key)


@contextlib.contextmanager
def translate_requests_errors(key: str | None, what: str) -> Iterator[None]:
    """Turn ``requests`` exceptions raised in the block into the storage error tree."""
    try:
        yield
    except StorageError:
        raise
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise TransientStorageError(f"{what} {key!r}: {type(exc).__name__}: {exc}", key=key) from exc
    except requests.RequestException as exc:
        raise PermanentStorageError(f"{what} {key!r}: {type(exc).__name__}: {exc}", key=key) from exc


def parse_multistatus(body: bytes) -> list[tuple[str, bool, int, float | None]]:
    """``(href path, is_collection, size, mtime)`` for each response of a 207 body; hostile XML is refused."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise PermanentStorageError("PROPFIND answer holds a DOCTYPE or ENTITY declaration; refused")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise PermanentStorageError(f"PROPFIND answer is not valid XML: {exc}") from None
    found = []
    for response in root.iter(f"{DAV}response"):
        href = response.findtext(f"{DAV}href") or ""
        props = [
            stat.find(f"{DAV}prop")
            for stat in response.iter(f"{DAV}propstat")
            if " 200 " in f"{stat.findtext(f'{DAV}status') or ''} "
        ]
        prop = next((p for p in props if p is not None), None)
        is_collection = prop is not None and prop.find(f"{DAV}resourcetype/{DAV}collection") is not None
        size_text = prop.findtext(f"{DAV}getcontentlength") if prop is not None else None
        modified = prop.findtext(f"{DAV}getlastmodified") if prop is not None else None
        try:
            size = int(size_text or 0)
            mtime = email.utils.parsedate_to_datetime(modified).timestamp() if modified else None
        except (ValueError, TypeError):
            raise PermanentStorageError(f"PROPFIND answer for {href[:200]!r} has a malformed size or date") from None
        found.append((unquote(urlsplit(href).path), is_collection, size, mtime))
    return found


class WebDavBackend(Backend):
    """Objects as files on a WebDAV server, reached over one pooled ``requests`` session."""

    csh_id = "WebDav"
    capabilities = Capabilities(server_side_copy=True, atomic_put=True, max_connections=4)

    def __init__(
        self, url: str, root_folder: str = "", username: str = "", password: str = "", *, allow_http: bool = False
    ) -> None:
        self.server_url = require_https(url, "url", allow_http=allow_http)
        self.root_folder = validate_prefix(root_folder.strip("/"), "root_folder")
        self.root_parts = self.root_folder.split("/") if self.root_folder else []
        self.base_url = self.server_url + "".join("/" + quote(part, safe="") for part in self.root_parts)
        self.base_path = unquote(urlsplit(self.base_url).path).rstrip("/")
        self.session = requests.Session()
        adapter = _BigBlockAdapter(pool_connections=4, pool_maxsize=self.capabilities.max_connections)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"oaiod/{__version__}"
        if username:
            self.session.auth = (username, password)
        self._known_collections: set[str] = set()
        self._lock = threading.Lock()
        self._mkcol_lock = threading.Lock()  # one MKCOL at a time: servers answer 500 to a second one racing it

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> WebDavBackend:
        checked = check_args(
            args,
            cls.csh_id,
            required=("url",),
            optional=("root_folder", "username", "allow_http", *secret_arg_names("password")),
        )
        username = checked.get("username") or ""
        password = secret_from_args(checked, "password", required=bool(username))
        return cls(
            checked["url"],
            checked.get("root_folder") or "",
            username,
            password.reveal() if password else "",
            allow_http=truthy_arg(checked, "allow_http"),
        )

    def describe(self) -> str:
        return f"WebDav {self.base_url}"

    def close(self) -> None:
        self.session.close()

    # -- requests -------------------------------------------------------------------------------------------

    def _url(self, key: str, *, collection: bool = False) -> str:
        path = "".join("/" + quote(part, safe="") for part in key.split("/")) if key else ""
        return self.base_url + path + ("/" if collection else "")

    def _request(self, method: str, url: str, key: str | None, what: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        with translate_requests_errors(key, what):
            return self.session.request(method, url, **kwargs)

    def _ensure_parents(self, key: str) -> None:
        """MKCOL every missing collection above ``key`` (root folder included), top-down; 405 means it exists."""
        parts = [*self.root_parts, *key.split("/")[:-1]]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder in self._known_collections:
                continue
            url = self.server_url + "".join("/" + quote(part, safe="") for part in parts[:depth]) + "/"
            with self._mkcol_lock:  # several copies or puts into one new folder at once (copy_many) make it once
                if folder in self._known_collections:
                    continue
                response = self._request("MKCOL", url, key, "cannot create the folder for")
                if response.status_code not in (200, 201, 204, 301, 405):
                    raise_for_status(response, key, f"cannot create folder {folder!r} for")
                    raise PermanentStorageError(f"MKCOL {folder!r} answered HTTP {response.status_code}", key=key)
                with self._lock:
                    self._known_collections.add(folder)

    def _move(self, src: str, dst: str, what: str) -> None:
        headers = {"Destination": self._url(dst), "Overwrite": "T"}
        response = self._request("MOVE", self._url(src), dst, what, headers=headers)
        raise_for_status(response, dst, what)

    # -- primitives -------------------------------------------------------------------------------------------

    def put_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None) -> None:
        validate_key(key)
        tmp = temp_name(key)
        self._ensure_parents(key)
        for attempt in (1, 2):
            response = self._upload(tmp, key, local_path, progress)
            if response.status_code != 409 or attempt == 2:
                break
            log.info("WebDAV PUT of %r found a parent folder missing; creating it again", key)
            with self._lock:
                self._known_collections.clear()
            self._ensure_parents(key)
        raise_for_status(response, key, "cannot upload")
        try:
            self._move(tmp, key, "cannot move the upload into place for")
        except StorageError:
            with contextlib.suppress(StorageError):
                self._request("DELETE", self._url(tmp), tmp, "cannot clean up")
            raise

    def _upload(self, tmp: str, key: str, local_path: PathLike, progress: Progress | None) -> requests.Response:
        with open(local_path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            body: Any = _UploadReader(file, size, progress) if size else b""
            headers = {"Content-Type": "application/octet-stream"}
            return self._request("PUT", self._url(tmp), key, "cannot upload", data=body, headers=headers)

    def get_file(self, key: str, local_path: PathLike, *, progress: Progress | None = None, fsync: bool = True) -> None:
        validate_key(key)
        with (
            translate_requests_errors(key, "cannot download"),
            self.session.get(self._url(key), stream=True, timeout=TIMEOUT) as response,
        ):
            raise_for_status(response, key, "cannot download")
            with atomic_local_file(local_path, fsync=fsync) as file:
                for chunk in response.iter_content(CHUNK_SIZE):
                    file.write(chunk)
                    if progress is not None:
                        progress(len(chunk))

    def _propfind(self, url: str, key: str, depth: str) -> list[tuple[str, bool, int, float | None]] | None:
        """The parsed PROPFIND answer, or None when the resource does not exist."""
        headers = {"Depth": depth, "Content-Type": "application/xml; charset=utf-8"}
        response = self._request("PROPFIND", url, key, "cannot list", data=PROPFIND_BODY, headers=headers)
        if response.status_code == 404:
            return None
        raise_for_status(response, key, "cannot list")
        if response.status_code != 207:
            raise PermanentStorageError(f"PROPFIND {key!r} answered HTTP {response.status_code}, not 207", key=key)
        if len(response.content) > MAX_PROPFIND_BYTES:
            raise PermanentStorageError(f"PROPFIND answer for {key!r} is larger than {MAX_PROPFIND_BYTES}", key=key)
        return parse_multistatus(response.content)

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        found = self._propfind(self._url(key), key, "0")
        if not found:
            raise ObjectNotFound(f"no object {key!r} on {self.describe()}", key=key)
        _path, is_collection, size, mtime = found[0]
        if is_collection:
            raise ObjectNotFound(f"{key!r} is a folder, not an object", key=key)
        return ObjectInfo(key=key, size=size, mtime=mtime)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        return checked_listing(self._walk(prefix), self.describe())

    def _walk(self, prefix: str) -> Iterator[ObjectInfo]:
        pending = [prefix]
        while pending:
            folder = pending.pop()
            found = self._propfind(self._url(folder, collection=True), folder, "1")
            if found is None:
                continue
            own_path = self.base_path + ("/" + folder if folder else "")
            children = []
            for path, is_collection, size, mtime in found:
                path = path.rstrip("/")
                if path == own_path:
                    continue
                if not path.startswith(own_path + "/") or "/" in path[len(own_path) + 1 :]:
                    log.warning("skipping %r listed by %s: not a child of %r", path[:200], self.describe(), own_path)
                    continue
                children.append((path[len(own_path) + 1 :], is_collection, size, mtime))
            subfolders = []
            for name, is_collection, size, mtime in sorted(children):
                if is_collection:
                    subfolders.append(join_key(folder, name))
                else:
                    yield ObjectInfo(key=join_key(folder, name), size=size, mtime=mtime)
            pending.extend(reversed(subfolders))

    def delete(self, key: str) -> None:
        validate_key(key)
        response = self._request("DELETE", self._url(key), key, "cannot delete")
        if response.status_code != 404:
            raise_for_status(response, key, "cannot delete")

    # -- extras -----------------------------------------------------------------------------------------------

    def delete_prefix(self, prefix: str) -> None:
        prefix = validate_prefix(prefix)
        if not prefix:
            super().delete_prefix(prefix)  # refuses the empty prefix
        response = self._request("DELETE", self._url(prefix, collection=True), prefix, "cannot delete")
        with self._lock:
            self._known_collections.clear()
        if response.status_code != 404:
            raise_for_status(response, prefix, "cannot delete")

    def copy(self, src: str, dst: str) -> None:
        validate_key(src, "src")
        validate_key(dst, "dst")
        self._ensure_parents(dst)
        tmp = temp_name(dst)
        headers = {"Destination": self._url(tmp), "Overwrite": "T"}
        response = self._request("COPY", self._url(src), src, "cannot copy", headers=headers)
        raise_for_status(response, src, "cannot copy")
        try:
            self._move(tmp, dst, "cannot move the copy into place for")
        except StorageError:
            with contextlib.suppress(StorageError):
                self._request("DELETE", self._url(tmp), tmp, "cannot clean up")
            raise
