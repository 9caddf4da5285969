"""The exceptions of the HTTP layer (the tree is drawn in :mod:`oaiod.http`), and the boundary where an answer
or a ``requests`` failure becomes one of them: :func:`error_for_response` and :func:`translate_exception`.

Every call of :class:`~oaiod.http.HttpClient` and every body read through :func:`~oaiod.http.iter_bytes` or
:func:`~oaiod.http.json_of` has its ``requests`` failures translated here, so their callers never catch one.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json as _json
import re
import time
from typing import Any

import requests

from oaiod.errors import FailureKind, OaiodError
from oaiod.http.redact import mask_json, mask_url

MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer read and kept in HTTPStatusError.body
SHOWN_BODY_CHARS = 300  # characters of an error body shown in a message


class RemoteError(OaiodError):
    """Anything that went wrong talking to an HTTP peer."""


class TransportError(RemoteError):
    """No usable answer: connection refused or reset, name resolution, TLS. ``request_sent`` is False when the
    failure happened before any byte of the request left, so even a non-idempotent call may be repeated."""

    kind = FailureKind.TRANSIENT

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class RequestTimeout(TransportError):
    """No connection (``request_sent`` False) or no answer within the timeout."""


class ProtocolError(RemoteError):
    """The peer answered, but not as the protocol promises (a body that is not JSON, an invalid object, …)."""

    kind = FailureKind.INVALID


class HTTPStatusError(RemoteError):
    """A non-2xx answer; ``body`` is the parsed JSON or the (truncated) text; ``url`` has its secrets masked."""

    def __init__(
        self, method: str, url: str, status: int, body: Any, reason: str = "", retry_after: float | None = None
    ):
        self.method = method
        self.url = mask_url(url)
        self.status = status
        self.body = body
        self.retry_after = retry_after
        shown = _json.dumps(mask_json(body), ensure_ascii=False) if not isinstance(body, str) else body
        if len(shown) > SHOWN_BODY_CHARS:
            shown = shown[:SHOWN_BODY_CHARS] + "…"
        super().__init__(f"{method} {self.url} answered {status} {reason}".rstrip() + (f": {shown}" if shown else ""))


class AuthError(HTTPStatusError):
    """401, or a login that was refused: the credentials are wrong or the session cannot be renewed."""

    kind = FailureKind.AUTH


class PermissionDenied(HTTPStatusError):
    """403: logged in, but not allowed."""

    kind = FailureKind.PERMISSION


class NotFound(HTTPStatusError):
    """404."""

    kind = FailureKind.NOT_FOUND


class Conflict(HTTPStatusError):
    """409: the server kept its own state, which ``body`` holds (for the hub: ``body["object"]``)."""

    kind = FailureKind.CONFLICT


class Gone(HTTPStatusError):
    """410: e.g. a ``since`` cursor older than the server keeps tombstones for."""

    kind = FailureKind.NOT_FOUND


class PayloadTooLarge(HTTPStatusError):
    """413."""

    kind = FailureKind.QUOTA


class RateLimited(HTTPStatusError):
    """429; ``retry_after`` is how many seconds the server asked to wait, if it said."""

    kind = FailureKind.TRANSIENT


class ClientError(HTTPStatusError):
    """Any other 4xx: the request was wrong and repeating it will not help."""

    kind = FailureKind.INVALID


class ServerError(HTTPStatusError):
    """5xx: the server failed; a retry later may succeed."""

    kind = FailureKind.TRANSIENT


_STATUS_ERRORS: dict[int, type[HTTPStatusError]] = {
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    429: RateLimited,
}


def error_class(status: int) -> type[HTTPStatusError]:
    """The exception class for a non-2xx status."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return ServerError if status >= 500 else ClientError


def error_for_response(response: requests.Response) -> HTTPStatusError:
    """The typed exception for a non-2xx answer (reads at most :data:`MAX_ERROR_BODY` bytes, then closes it)."""
    request = response.request
    method = request.method or "?"
    chunks: list[bytes] = []
    try:
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            if sum(map(len, chunks)) >= MAX_ERROR_BODY:
                break
    except requests.RequestException:
        pass  # the status says enough
    finally:
        response.close()
    raw = b"".join(chunks)[:MAX_ERROR_BODY]
    body: Any = raw.decode("utf-8", "replace")
    if body[:1] in ("{", "["):
        try:
            body = _json.loads(body)
        except ValueError:
            pass
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return error_class(status)(method, request.url or "", status, body, response.reason or "", retry_after)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def translate_exception(exc: requests.RequestException, method: str, shown_url: str) -> RemoteError:
    """The :class:`RemoteError` for a ``requests`` failure; the message names no secret."""
    reason = _reason(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return RequestTimeout(f"{method} {shown_url}: no connection within the timeout ({reason})", request_sent=False)
    if isinstance(exc, requests.Timeout):
        return RequestTimeout(f"{method} {shown_url}: no answer within the timeout ({reason})")
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportError(f"{method} {shown_url}: TLS failed: {reason}", request_sent=False)
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return TransportError(f"{method} {shown_url}: invalid URL", request_sent=False)
    sent = not re.search(r"NewConnectionError|NameResolutionError|Failed to establish", repr(exc.args))
    return TransportError(f"{method} {shown_url}: {reason}", request_sent=sent)


def _reason(exc: BaseException) -> str:
    """A short reason from the innermost cause of a requests/urllib3 exception, without URLs or object reprs."""
    inner: BaseException = exc
    for _depth in range(6):
        nxt = getattr(inner, "reason", None)
        if not isinstance(nxt, BaseException) and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    text = re.sub(r"<[^>]*>:? ?|\w+Connection\([^)]*\):? ?", "", str(inner))
    text = re.sub(r"(url|host)[:=] ?\S+", r"\1 …", text)
    return f"{type(inner).__name__}: {text}"[:300]
