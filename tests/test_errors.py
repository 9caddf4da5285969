"""One failure vocabulary: every error of every boundary says its kind, ``transient`` is that kind, and an
``OSError`` (or an error raised from one) is classified by its errno."""

from __future__ import annotations

import errno

import pytest

from oaiod import http
from oaiod.engine.context import EngineError, IntegrityError
from oaiod.engine.localfs import LocalChanged, LocalFsError, UnsafePath
from oaiod.errors import ConfigError, FailureKind, OaiodError, ValidationError, failure_kind
from oaiod.storage import errors as storage


def _translated(cause: OSError) -> LocalFsError:
    try:
        try:
            raise cause
        except OSError as exc:
            raise LocalFsError(f"cannot make x: {exc.strerror}") from exc
    except LocalFsError as translated:
        return translated


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (http.TransportError("GET u: connection refused"), FailureKind.TRANSIENT),
        (http.RequestTimeout("GET u: no answer"), FailureKind.TRANSIENT),
        (http.ServerError("GET", "http://h/u", 502, ""), FailureKind.TRANSIENT),
        (http.RateLimited("GET", "http://h/u", 429, ""), FailureKind.TRANSIENT),
        (http.AuthError("GET", "http://h/u", 401, ""), FailureKind.AUTH),
        (http.PermissionDenied("GET", "http://h/u", 403, ""), FailureKind.PERMISSION),
        (http.NotFound("GET", "http://h/u", 404, ""), FailureKind.NOT_FOUND),
        (http.Gone("GET", "http://h/u", 410, ""), FailureKind.NOT_FOUND),
        (http.Conflict("PUT", "http://h/u", 409, {}), FailureKind.CONFLICT),
        (http.PayloadTooLarge("PUT", "http://h/u", 413, ""), FailureKind.QUOTA),
        (http.ClientError("PUT", "http://h/u", 422, ""), FailureKind.INVALID),
        (http.ProtocolError("not JSON"), FailureKind.INVALID),
        (storage.TransientStorageError("timeout"), FailureKind.TRANSIENT),
        (storage.StoragePermissionDenied("read-only"), FailureKind.PERMISSION),
        (storage.QuotaExceeded("full"), FailureKind.QUOTA),
        (storage.ObjectNotFound("gone"), FailureKind.NOT_FOUND),
        (storage.PermanentStorageError("refused"), FailureKind.INVALID),
        (storage.LocalFileChanged("edited while read"), FailureKind.CONFLICT),
        (storage.InvalidKey("key", "has .."), FailureKind.INVALID),
        (ValidationError("path", "has .."), FailureKind.INVALID),
        (UnsafePath("../x", "leaves its root"), FailureKind.INVALID),
        (LocalChanged("edited meanwhile"), FailureKind.CONFLICT),
        (EngineError("the object names no storage host"), FailureKind.INVALID),
        (IntegrityError("k: downloaded sha256 is not the manifest's"), FailureKind.TRANSIENT),
        (ConfigError("server.url", "missing"), FailureKind.INVALID),
        (OaiodError("declares no kind"), FailureKind.INVALID),
        (ValueError("not ours"), FailureKind.INVALID),
        (PermissionError(errno.EACCES, "Permission denied"), FailureKind.PERMISSION),
        (OSError(errno.EROFS, "Read-only file system"), FailureKind.PERMISSION),
        (OSError(errno.ENOSPC, "No space left on device"), FailureKind.QUOTA),
        (OSError(errno.ENAMETOOLONG, "File name too long"), FailureKind.INVALID),
        (FileNotFoundError(errno.ENOENT, "No such file"), FailureKind.NOT_FOUND),
        (OSError(errno.EIO, "Input/output error"), FailureKind.TRANSIENT),
        (_translated(OSError(errno.EACCES, "Permission denied")), FailureKind.PERMISSION),
        (_translated(OSError(errno.ENOSPC, "No space left on device")), FailureKind.QUOTA),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_every_failure_has_one_kind(error: BaseException, kind: FailureKind) -> None:
    assert failure_kind(error) is kind
    if isinstance(error, OaiodError):
        assert error.transient is (kind is FailureKind.TRANSIENT)


def test_retry_may_help_has_one_name_on_every_boundary() -> None:
    assert not hasattr(storage.StorageError("x"), "retryable")
    assert storage.TransientStorageError("x").transient and http.TransportError("x").transient
    assert not storage.PermanentStorageError("x").transient and not http.NotFound("GET", "u", 404, "").transient
