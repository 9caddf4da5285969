"""``put_many``/``get_many`` of the ``Hub`` storage host over the hub's batch routes (``hub/blobs/put-many/`` and
``get-many/``, see ``docs/hub-api.md``): up to :data:`BATCH_ITEMS` small files per request instead of two or three
requests each. Used by :class:`oaiod.storage.hub.backend.HubBackend`; the results follow the contract of
:meth:`oaiod.storage.base.Backend.put_many` / ``get_many``. Choices a user may notice:

* Files above :data:`SINGLE_ABOVE` bytes (4 MiB) take the single-file path (resumable, chunked), as does any item
  the hub answers 413 for. A put-many request carries at most ``HubBackend.batch_bytes`` (16 MiB) of file bytes;
  a hub that answers 413 with a smaller ``limit`` gets smaller requests from then on. A large file is read once
  when the caller knows its sha256 (``Transfer.sha256``: announced, the hub checks it) and is not read back after
  its download (its bytes were checked against the hub's sha256 as they were written).
* put reads each small file once into memory (at most one request's worth), with an ``lstat`` before and after:
  a file that changed meanwhile is :class:`LocalFileChanged` and its bytes are not sent.
* get writes each file straight to its local path, created exclusively (never replacing anything), with its
  mtime and mode; it checks the size and sha256 the hub announced and removes a partial file on any error. A
  connection lost mid-answer is resumed with the items not yet received (up to :data:`RESUME_ATTEMPTS` times),
  then those items carry a :class:`TransientStorageError`.
* A hub without the routes (404/405) is remembered per backend: from then on items go one by one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import re
import stat as stat_mod
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from oaiod.http import NO_RETRY, HTTPStatusError, iter_bytes, json_of
from oaiod.storage.base import Progress, Transfer, Transferred
from oaiod.storage.errors import (
    LocalFileChanged,
    ObjectNotFound,
    PermanentStorageError,
    QuotaExceeded,
    StorageError,
    StoragePermissionDenied,
    TransientStorageError,
)
from oaiod.storage.toolkit import map_on_threads, new_file_mode, put_one, set_local_meta

if TYPE_CHECKING:
    from oaiod.storage.hub.backend import HubBackend

log = logging.getLogger("oaiod.storage.hub")

BATCH_ITEMS = 1000  #: items per request (the hub's limit)
BATCH_NAME_BYTES = 2 * 1024 * 1024  #: bytes of names per request (the hub takes a 4 MiB item list)
SINGLE_ABOVE = 4 * 1024 * 1024  #: files above this go one by one through the resumable single-file path
RESUME_ATTEMPTS = 5  #: consecutive failed get-many requests before the items left carry the error
MEDIA_TYPE = "application/x-oaiod-blob-batch"
MAX_LINE = 64 * 1024  #: longest frame line of a get-many answer (a name is at most 4 KiB, JSON-escaped)
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class NoBatchRoute(Exception):
    """The hub answered 404/405 to a batch route: it is older than them."""


def item_error(answer: Any, key: str) -> StorageError:
    """The storage error for a per-item refusal ``{status, error, reason}`` of the hub."""
    status = answer.get("status") if isinstance(answer, dict) else None
    reason = str(answer.get("reason", "") if isinstance(answer, dict) else answer)[:300]
    message = f"the hub refused {key!r} ({status}): {reason}"
    if status == 404:
        return ObjectNotFound(message, key=key)
    if status in (401, 403):
        return StoragePermissionDenied(message, key=key)
    if status in (413, 507):
        return QuotaExceeded(message, key=key)
    if status == 400 or status == 429 or (isinstance(status, int) and status >= 500):
        return TransientStorageError(message, key=key)  # 400: the hub got other bytes than were sent
    return PermanentStorageError(message, key=key)


def _status(exc: StorageError) -> int | None:
    cause = exc.__cause__
    return cause.status if isinstance(cause, HTTPStatusError) else None


def _post(backend: HubBackend, route: str, key: str, what: str, **kwargs: Any) -> Any:
    """A batch request; :class:`NoBatchRoute` for a hub without the route, else errors as storage errors."""
    from oaiod.storage.hub.backend import BLOBS, translate_remote_errors

    try:
        with translate_remote_errors(key, what):
            return backend.http.request("POST", f"{BLOBS}{route}", retry=NO_RETRY, **kwargs)
    except StorageError as exc:
        if _status(exc) in (404, 405):
            raise NoBatchRoute(route) from exc
        raise


# -- put ----------------------------------------------------------------------------------------------------------


class BatchPut:
    """One ``put_many`` call: small files in batches, large ones one by one."""

    def __init__(self, backend: HubBackend, items: list[Transfer], progress: Progress | None) -> None:
        self.backend, self.items, self.progress = backend, items, progress
        self.results: list[Transferred | None] = [None] * len(items)
        self.stats: list[os.stat_result | None] = [None] * len(items)

    def run(self) -> list[Transferred]:
        small, large = self._plan()
        failure: TransientStorageError | None = None
        for chunk in _chunks(small, self.items, self.stats, self.backend.batch_bytes):
            if failure is not None:  # the hub failed a batch just now: the rest are not tried in this call
                self._fail(chunk, failure)
            elif not self.backend.batch_routes:
                large.extend(chunk)
            else:
                try:
                    large.extend(self._send(chunk))
                except NoBatchRoute:
                    self.backend.forget_batch_routes()
                    large.extend(chunk)
                except TransientStorageError as exc:
                    failure = exc
                    self._fail(chunk, exc)
        self._put_singly(large)
        unsent = failure or PermanentStorageError("not transferred")
        return [result or Transferred(item.key, error=unsent) for item, result in
                zip(self.items, self.results, strict=True)]  # fmt: skip

    def _plan(self) -> tuple[list[int], list[int]]:
        """Item numbers of the small and the large files; missing or irregular ones get their result now."""
        small: list[int] = []
        large: list[int] = []
        for number, item in enumerate(self.items):
            try:
                st = os.lstat(item.local_path)
            except OSError:
                st = None
            if st is None or not stat_mod.S_ISREG(st.st_mode):
                self.results[number] = _changed(item, "is missing or not a file")
                continue
            self.stats[number] = st
            (large if st.st_size > min(SINGLE_ABOVE, self.backend.batch_bytes) else small).append(number)
        return small, large

    def _send(self, chunk: list[int]) -> list[int]:
        """One put-many request for the items ``chunk``; the item numbers left for the single-file path."""
        names: list[dict[str, Any]] = []
        datas: list[bytes] = []
        sent: list[tuple[int, str]] = []
        for number in chunk:
            item = self.items[number]
            data = self._read(number)
            if data is None:
                continue
            sha256 = hashlib.sha256(data).hexdigest()
            names.append({"name": item.key, "size": len(data), "sha256": sha256})
            datas.append(data)
            sent.append((number, sha256))
        if not sent:
            return []
        line = json.dumps({"items": names}, ensure_ascii=False).encode() + b"\n"
        body = b"".join([line, *datas])
        del datas
        try:
            answer = self._post(body, len(line), self.items[sent[0][0]].key)
        except QuotaExceeded as exc:
            return self._retry_smaller(exc, [number for number, _sha in sent])
        self._take(answer, sent)
        return []

    def _post(self, body: bytes, header: int, key: str) -> Any:
        headers = {"Content-Type": MEDIA_TYPE, "Accept": "application/json"}
        data = _Body(body, header, self.progress)
        response = _post(self.backend, "put-many/", key, "cannot upload a batch with", data=data, headers=headers)
        with translate_json_errors(key):
            return json_of(response)

    def _retry_smaller(self, exc: QuotaExceeded, numbers: list[int]) -> list[int]:
        """A 413 for the request: with a ``limit`` smaller than this backend's, send smaller requests from now on
        (the items of this one go one by one); else the hub is full or the limit unknown: raise."""
        body = getattr(exc.__cause__, "body", None)
        limit = body.get("limit") if isinstance(body, dict) else None
        if _status(exc) != 413 or not isinstance(limit, int) or limit * 3 // 4 >= self.backend.batch_bytes:
            raise exc
        self.backend.batch_bytes = max(64 * 1024, limit * 3 // 4)
        log.info("%s takes batches of at most %d bytes; sending %d bytes per batch from now on",
                 self.backend.describe(), limit, self.backend.batch_bytes)  # fmt: skip
        return numbers

    def _read(self, number: int) -> bytes | None:
        """The file's bytes, or None (and its result set) when it changed or vanished around the read."""
        item, before = self.items[number], self.stats[number]
        assert before is not None
        try:
            with open(item.local_path, "rb") as file:
                data = file.read()
            after = os.lstat(item.local_path)
        except OSError as exc:
            self.results[number] = _changed(item, f"cannot be read: {exc.strerror}")
            return None
        ident = (before.st_size, before.st_mtime_ns, before.st_ino)
        if (after.st_size, after.st_mtime_ns, after.st_ino) != ident or len(data) != before.st_size:
            self.results[number] = _changed(item, "changed while it was read")
            return None
        return data

    def _take(self, answer: Any, sent: list[tuple[int, str]]) -> None:
        """The per-item results of a put-many answer (which must list exactly the items sent, in order)."""
        listed = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(listed, list) or len(listed) != len(sent):
            raise PermanentStorageError(f"the hub's put-many answer does not list the {len(sent)} items sent")
        for (number, sha256), result in zip(sent, listed, strict=True):
            item, st = self.items[number], self.stats[number]
            assert st is not None
            if not isinstance(result, dict) or result.get("name") != item.key:
                raise PermanentStorageError(f"the hub's put-many answer is not about {item.key!r}", key=item.key)
            if "error" in result:
                self.results[number] = Transferred(item.key, error=item_error(result, item.key))
            elif result.get("sha256") != sha256 or result.get("size") != st.st_size:
                raise PermanentStorageError(f"the hub stored {item.key!r} with another size or sha256", key=item.key)
            else:
                self.results[number] = Transferred(item.key, st.st_size, st.st_mtime_ns, st.st_ino, sha256)

    def _fail(self, chunk: list[int], exc: StorageError) -> None:
        for number in chunk:
            if self.results[number] is None:
                self.results[number] = Transferred(self.items[number].key, error=exc)

    def _put_singly(self, numbers: list[int]) -> None:
        items = [self.items[number] for number in numbers]
        done = map_on_threads(lambda item: _put_one(self.backend, item, self.progress), items,
                              self.backend.capabilities)  # fmt: skip
        for number, result in zip(numbers, done, strict=True):
            self.results[number] = result


def _put_one(backend: HubBackend, item: Transfer, progress: Progress | None) -> Transferred:
    """``put_one`` of one large file, announcing ``item.sha256`` when the caller knows it: the file is read once
    (no hashing pass first) and the hub checks the bytes at finish. Bytes it refuses for that hash, or a stat that
    changed around the read, make the item :class:`LocalFileChanged`, as for any put."""
    if item.sha256 is None:
        return put_one(backend, item, progress)
    try:
        before = os.lstat(item.local_path)
    except OSError:
        before = None
    if before is None or not stat_mod.S_ISREG(before.st_mode):
        return _changed(item, "is missing or not a file")
    ident = (before.st_size, before.st_mtime_ns, before.st_ino)
    error: StorageError | None = None
    try:
        backend.put_file(item.key, item.local_path, progress=progress, sha256=item.sha256)
    except StorageError as exc:
        error = exc
    try:
        after = os.lstat(item.local_path)
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns, after.st_ino) != ident:
        return _changed(item, "changed while it was read")
    if error is not None and _status(error) == 400 and "sha256" in str(error):
        return _changed(item, "does not have the sha256 it was indexed with (changed since)")
    if error is not None:
        return Transferred(item.key, error=error)
    return Transferred(item.key, *ident, item.sha256)


class _Body(io.BytesIO):
    """A put-many body that reports the file bytes (not the item list's ``header`` bytes) to ``progress`` as they
    are sent; seekable and sized, so a request can be repeated after a new login."""

    def __init__(self, body: bytes, header: int, progress: Progress | None) -> None:
        super().__init__(body)
        self._header, self._progress, self._length = header, progress, len(body)

    def read(self, amount: int | None = -1) -> bytes:
        start = self.tell()
        data = super().read(amount)
        if self._progress is not None and data:
            counted = self.tell() - max(start, self._header)
            if counted > 0:
                self._progress(counted)
        return data

    def __len__(self) -> int:
        return self._length  # requests subtracts the position itself


def _changed(item: Transfer, what: str) -> Transferred:
    return Transferred(item.key, error=LocalFileChanged(f"{item.local_path} {what}", key=item.key))


def _chunks(
    numbers: list[int], items: list[Transfer], stats: list[os.stat_result | None], budget: int
) -> Iterator[list[int]]:
    """``numbers`` in requests of at most :data:`BATCH_ITEMS` items, ``budget`` file bytes and about
    :data:`BATCH_NAME_BYTES` of names."""
    chunk: list[int] = []
    size = names = 0
    for number in numbers:
        st = stats[number]
        weight, name = st.st_size if st is not None else 0, len(items[number].key.encode()) + 100
        if chunk and (len(chunk) == BATCH_ITEMS or size + weight > budget or names + name > BATCH_NAME_BYTES):
            yield chunk
            chunk, size, names = [], 0, 0
        chunk.append(number)
        size, names = size + weight, names + name
    if chunk:
        yield chunk


@contextlib.contextmanager
def translate_json_errors(key: str) -> Iterator[None]:
    from oaiod.storage.hub.backend import translate_remote_errors

    with translate_remote_errors(key, "cannot read the hub's answer about"):
        yield


# -- get ----------------------------------------------------------------------------------------------------------


class BatchGet:
    """One ``get_many`` call: get-many requests for what is left until every item has a result."""

    def __init__(self, backend: HubBackend, items: list[Transfer], progress: Progress | None) -> None:
        self.backend, self.items, self.progress = backend, items, progress
        self.results: list[Transferred | None] = [None] * len(items)
        self.written: list[str] = []  # files this call made, removed should it raise

    def run(self) -> list[Transferred]:
        try:
            pending = [number for number, item in enumerate(self.items) if self._absent(number, item)]
            by_blocks = {number for number in pending if self._by_blocks(self.items[number])}
            single = self._batches([number for number in pending if number not in by_blocks])
            self._get_singly(sorted(by_blocks) + single)
        except BaseException:
            for path in self.written:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        return [result or Transferred(item.key, error=PermanentStorageError("not transferred", key=item.key))
                for item, result in zip(self.items, self.results, strict=True)]  # fmt: skip

    def _by_blocks(self, item: Transfer) -> bool:
        """A large file with a basis goes alone: it may be rebuilt from the basis (:mod:`.blocks`)."""
        from oaiod.storage.hub.backend import _large_file

        return item.basis is not None and self.backend.block_routes and _large_file(item.basis)

    def _absent(self, number: int, item: Transfer) -> bool:
        if os.path.lexists(item.local_path):
            self.results[number] = _changed(item, "exists; not replacing it")
            return False
        return True

    def _batches(self, pending: list[int]) -> list[int]:
        """Ask for ``pending`` until each has a result; the item numbers left for the single-file path."""
        single: list[int] = []
        failures = 0
        while pending:
            if not self.backend.batch_routes:
                return single + pending
            request = pending[:BATCH_ITEMS]
            try:
                single += self._request(request)
                failures = 0
            except NoBatchRoute:
                self.backend.forget_batch_routes()
                return single + pending
            except TransientStorageError as exc:
                failures += 1
                if failures >= RESUME_ATTEMPTS:
                    for number in pending:
                        if self.results[number] is None:
                            self.results[number] = Transferred(self.items[number].key, error=exc)
                    return single
                delay = random.uniform(0, min(10.0, 0.2 * 2**failures))
                log.warning("hub get-many broke (%s); asking again for what is left in %.1f s", exc, delay)
                time.sleep(delay)
            left_out = set(single)
            pending = [number for number in pending if self.results[number] is None and number not in left_out]
        return single

    def _request(self, numbers: list[int]) -> list[int]:
        """One get-many request for ``numbers``; writes what it answers; the numbers it left for a single get."""
        names = [self.items[number].key for number in numbers]
        body = json.dumps({"names": names}, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Accept": MEDIA_TYPE}
        response = _post(self.backend, "get-many/", names[0], "cannot download a batch with",
                         data=body, headers=headers, stream=True)  # fmt: skip
        reader = _FrameReader(iter_bytes(response, 1024 * 1024), names[0])
        single: list[int] = []
        answered = 0
        try:
            for number in numbers:
                line = reader.line()
                if line is None:
                    break
                answered += 1
                if self._frame(number, line, reader):
                    single.append(number)
            if answered and reader.line() is not None:
                raise PermanentStorageError("the hub's get-many answer holds more items than were asked for")
        finally:
            response.close()
        if not answered and numbers:
            raise PermanentStorageError(f"the hub's get-many answer for {names[0]!r} holds no item", key=names[0])
        return single

    def _frame(self, number: int, line: dict[str, Any], reader: _FrameReader) -> bool:
        """Write one answered item; True when it is to be fetched alone (413: too large for a batch)."""
        item = self.items[number]
        if line.get("name") != item.key:
            raise PermanentStorageError(f"the hub's get-many answer is not about {item.key!r}", key=item.key)
        if "error" in line:
            if line.get("status") == 413:
                return True
            self.results[number] = Transferred(item.key, error=item_error(line, item.key))
            return False
        size, sha256 = line.get("size"), line.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(sha256, str):
            raise PermanentStorageError(f"the hub announced {item.key!r} without a valid size", key=item.key)
        if not _SHA256.match(sha256):
            raise PermanentStorageError(f"the hub announced {item.key!r} without a valid sha256", key=item.key)
        self.results[number] = self._write(item, size, sha256, reader)
        return False

    def _write(self, item: Transfer, size: int, sha256: str, reader: _FrameReader) -> Transferred:
        """The item's ``size`` bytes into a new file at its local path (or skipped when it cannot be made)."""
        try:
            fd = os.open(item.local_path, _WRITE_FLAGS, 0o600)
        except OSError as exc:
            for _block in reader.blocks(size):
                pass
            return _changed(item, f"cannot be created: {exc.strerror}")
        self.written.append(item.local_path)
        try:
            with open(fd, "wb", closefd=True) as file:
                digest = hashlib.sha256()
                for block in reader.blocks(size):
                    file.write(block)
                    digest.update(block)
                    if self.progress is not None:
                        self.progress(len(block))
                if digest.hexdigest() != sha256:
                    raise TransientStorageError(f"the bytes of {item.key!r} do not have the announced sha256")
                file.flush()
                os.fchmod(file.fileno(), new_file_mode(item.executable))
                if item.mtime_ns is not None:
                    os.utime(file.fileno(), ns=(item.mtime_ns, item.mtime_ns))
                st = os.fstat(file.fileno())
        except BaseException as exc:
            self.written.pop()
            with contextlib.suppress(OSError):
                os.unlink(item.local_path)
            if isinstance(exc, TransientStorageError) and "announced sha256" in str(exc):
                return Transferred(item.key, error=exc)
            if isinstance(exc, OSError):
                return _changed(item, f"cannot be written: {exc.strerror}")
            raise
        return Transferred(item.key, st.st_size, st.st_mtime_ns, st.st_ino, sha256)

    def _get_singly(self, numbers: list[int]) -> None:
        items = [self.items[number] for number in numbers]

        done = map_on_threads(lambda item: _get_one(self.backend, item, self.progress), items,
                              self.backend.capabilities)  # fmt: skip
        for number, result in zip(numbers, done, strict=True):
            self.results[number] = result
            if result.error is None:
                self.written.append(self.items[number].local_path)


def _get_one(backend: HubBackend, item: Transfer, progress: Progress | None) -> Transferred:
    """``get_one`` of one large file, without reading it back: ``get_file_verified`` checked the bytes against the
    hub's sha256 as they were written, so that hash is the result's (a read-back pass cost as long as the download
    from a local hub)."""
    if os.path.lexists(item.local_path):
        return _changed(item, "exists; not replacing it")
    try:
        sha256 = backend.get_file_verified(  # from the basis's blocks where it can (:mod:`.blocks`); caller syncs
            item.key, item.local_path, progress=progress, fsync=False, basis=item.basis
        )
    except StorageError as exc:
        return Transferred(item.key, error=exc)
    try:
        set_local_meta(item.local_path, item.mtime_ns, item.executable)
        st = os.lstat(item.local_path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(item.local_path)
        return _changed(item, f"cannot be given its mtime and mode: {exc.strerror}")
    return Transferred(item.key, st.st_size, st.st_mtime_ns, st.st_ino, sha256)


class _FrameReader:
    """Reads a framed answer (a JSON line, then bytes) from a stream of chunks, holding about one chunk."""

    def __init__(self, chunks: Iterator[bytes], key: str) -> None:
        self._chunks, self._key = chunks, key
        self._buffer = b""
        self._position = 0  # bytes of the buffer already read

    def _more(self) -> bool:
        from oaiod.storage.hub.backend import translate_remote_errors

        with translate_remote_errors(self._key, "cannot download a batch with"):
            for chunk in self._chunks:
                if chunk:
                    self._buffer = self._buffer[self._position :] + chunk
                    self._position = 0
                    return True
        return False

    def line(self) -> dict[str, Any] | None:
        """The next frame's line; None at the end of the answer."""
        while (end := self._buffer.find(b"\n", self._position)) < 0:
            if len(self._buffer) - self._position > MAX_LINE:
                raise PermanentStorageError("the hub's get-many answer has an over-long line", key=self._key)
            if not self._more():
                if self._position < len(self._buffer):
                    raise TransientStorageError("the hub's get-many answer ends inside a line", key=self._key)
                return None
        raw, self._position = self._buffer[self._position : end], end + 1
        try:
            line = json.loads(raw)
        except ValueError:
            raise PermanentStorageError(
                "the hub's get-many answer has a line that is not JSON", key=self._key
            ) from None
        if not isinstance(line, dict):
            raise PermanentStorageError("the hub's get-many answer has a line that is not an object", key=self._key)
        return line

    def blocks(self, size: int) -> Iterator[bytes]:
        """The next ``size`` bytes, in the blocks they arrived in."""
        while size:
            if self._position >= len(self._buffer) and not self._more():
                raise TransientStorageError("the hub's get-many answer ends inside an item", key=self._key)
            end = min(len(self._buffer), self._position + size)
            block, self._position = self._buffer[self._position : end], end
            size -= len(block)
            yield block
