"""HttpClient: requests to one server, built on a ``requests.Session``.

Each call gets a (connect, read) timeout; idempotent calls are retried with exponential backoff and full jitter
on transient failures, honouring ``Retry-After``; a call that fails because the session or token expired logs in
again once and is repeated once (the seeds' "refresh if necessary"); one :class:`~oaiod.http.AuthPlugin` may be
shared by the clients of one server. Every request is logged at DEBUG (logger ``oaiod.http``) as a
copy-pasteable ``curl`` line with secrets masked, and timed in :attr:`HttpClient.timings`.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import requests.adapters

from oaiod import __version__, jsoncodec
from oaiod.http.errors import (
    ProtocolError,
    RemoteError,
    TransportError,
    error_for_response,
    translate_exception,
)
from oaiod.http.redact import curl_command, mask_url
from oaiod.http.urls import check_url_security

if TYPE_CHECKING:
    from oaiod.http.auth import AuthPlugin

log = logging.getLogger("oaiod.http")  # one logger for the whole HTTP layer (operators and tests filter on it)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
USER_AGENT = f"oaiod/{__version__}"


# -- timings and retry policy ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """One HTTP exchange as seen by the client (every attempt of a retried call is one entry)."""

    method: str
    url: str  # secrets masked
    status: int | None  # None: no answer (transport error or timeout)
    seconds: float
    bytes_sent: int
    bytes_received: int

    @property
    def bytes(self) -> int:
        return self.bytes_sent + self.bytes_received


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures of idempotent calls are retried: full-jitter exponential backoff, bounded."""

    max_attempts: int = 5  # including the first
    base_delay: float = 0.5  # seconds; the n-th retry waits uniform(0, min(max_delay, base_delay * 2**n))
    max_delay: float = 30.0
    max_total_delay: float = 120.0  # stop retrying when the sleeps would add up to more than this
    max_retry_after: float = 300.0  # a server's Retry-After is capped at this

    def backoff(self, retry_number: int) -> float:
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2**retry_number))


NO_RETRY = RetryPolicy(max_attempts=1)


# -- the client ---------------------------------------------------------------------------------------------------

_UNSET: Any = object()
Body = bytes | str | Any  # bytes, text, a file-like object or an iterator of bytes (streamed)


class HttpClient:
    """Requests to one server (``base_url``), with auth, retries, timeouts, typed errors, timings and curl logs.

    Not tied to oaio: storage backends reuse it with their own auth plugin. Thread-safe as far as
    ``requests.Session`` is (connection pool shared, one request per thread at a time is fine).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthPlugin | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        verify: bool | str = True,
        allow_insecure: bool = False,
        max_timings: int = 1000,
        pool_size: int = 10,
    ) -> None:
        check_url_security(base_url, allow_insecure=allow_insecure, key="base_url")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.verify = verify
        self.timings: deque[Timing] = deque(maxlen=max_timings)
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.auth = _no_netrc  # credentials come from the auth plugin only, never from ~/.netrc
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers.update(headers or {})

    def __repr__(self) -> str:
        return f"HttpClient({mask_url(self.base_url)!r}, auth={self.auth!r})"

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        """The absolute URL of ``path``: appended to :attr:`base_url` (already quoted), or an absolute http(s) URL."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + path.lstrip("/")

    def is_own_origin(self, url: str) -> bool:
        """True when ``url`` is on this client's server: only such requests get the auth plugin's credentials."""
        mine, theirs = urlsplit(self.base_url), urlsplit(url)
        return (mine.scheme, mine.netloc.lower()) == (theirs.scheme, theirs.netloc.lower())

    def reset_timings(self) -> None:
        self.timings.clear()

    # -- the public call ------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = _UNSET,
        data: Body | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        idempotent: bool | None = None,
        timeout: float | tuple[float, float] | None = None,
        retry: RetryPolicy | None = None,
        authenticate: bool = True,
    ) -> requests.Response:
        """Send one call and return its 2xx answer, or raise a :class:`RemoteError`.

        ``json`` is encoded as the body; ``data`` may be bytes, text, a file-like object or an iterator (a
        seekable file is rewound for a retry; an iterator makes the call non-retryable). ``idempotent`` marks a
        call safe to repeat (default: by method). ``authenticate=False`` neither logs in first nor re-logs in
        (the login call itself). With ``stream`` the caller reads the body (see :func:`iter_bytes`) and closes it.
        """
        method = method.upper()
        url = self.url(path)
        call_headers = dict(headers or {})
        if json is not _UNSET:
            data = jsoncodec.dumps(json)  # compact UTF-8; NaN, Infinity and what is not JSON raise as in json.dumps
            call_headers.setdefault("Content-Type", "application/json")
        rewind = _rewinder(data)
        repeatable = (method in IDEMPOTENT_METHODS if idempotent is None else idempotent) and rewind is not None
        policy = retry or self.retry
        call = _Call(method, url, params, data, call_headers, stream, timeout or self.timeout, authenticate)
        slept, attempt = 0.0, 1
        while True:
            try:
                return self._send_authenticated(call, rewind)
            except RemoteError as exc:
                delay = _retry_delay(exc, policy, attempt, slept, repeatable)
                if delay is None:
                    raise
                # DEBUG: a retry that works is routine; one that does not is reported once by whoever called
                log.debug("%s %s failed (%s); retry %d of %d in %.1f s", method, mask_url(url), _short(exc),
                          attempt, policy.max_attempts - 1, delay)  # fmt: skip
                time.sleep(delay)
                slept += delay
                attempt += 1
                if rewind is not None:
                    rewind()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("HEAD", path, **kwargs)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        """GET and decode the JSON answer (:class:`ProtocolError` when it is not JSON)."""
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        return json_of(self.request("GET", path, headers=headers, **kwargs))

    def post_json(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        """POST ``json`` and decode the JSON answer."""
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        return json_of(self.request("POST", path, json=json, headers=headers, **kwargs))

    # -- one attempt ----------------------------------------------------------------------------------------------

    def _send_authenticated(self, call: _Call, rewind: Callable[[], None] | None) -> requests.Response:
        """One attempt: log in if needed, send, and on an expired session log in again and send once more."""
        auth = self.auth if call.authenticate and self.is_own_origin(call.url) else None
        if auth is not None:
            auth.ensure(self)
        generation = auth.generation if auth is not None else 0
        response = self._send_once(call)
        if auth is not None and not response.ok and auth.needs_reauth(response) and rewind is not None:
            response.close()
            log.info("session for %s expired or was refused (%d); logging in again", mask_url(self.base_url),
                     response.status_code)  # fmt: skip
            auth.reauthenticate(self, generation)
            rewind()
            response = self._send_once(call)
        if not response.ok:
            raise error_for_response(response)
        return response

    def _send_once(self, call: _Call) -> requests.Response:
        request = requests.Request(call.method, call.url, params=call.params, data=call.data, headers=call.headers)
        prepared = self.session.prepare_request(request)
        own = self.auth is not None and self.is_own_origin(call.url)
        if own:
            self.auth.apply(self, prepared)  # type: ignore[union-attr]
        shown_url = mask_url(prepared.url or call.url)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", curl_command(prepared))
        sent = _body_size(prepared)
        start = time.perf_counter()
        try:
            response = self.session.send(
                prepared, timeout=call.timeout, stream=call.stream, verify=self.verify, allow_redirects=False
            )
        except requests.RequestException as exc:
            seconds = time.perf_counter() - start
            self.timings.append(Timing(call.method, shown_url, None, seconds, sent, 0))
            error = translate_exception(exc, call.method, shown_url)
            log.debug("%s %s failed after %.3f s: %s", call.method, shown_url, seconds, error)
            raise error from None
        seconds = time.perf_counter() - start
        received = int(response.headers.get("Content-Length") or 0) if call.stream else len(response.content)
        self.timings.append(Timing(call.method, shown_url, response.status_code, seconds, sent, received))
        log.debug("%s %s answered %d %s in %.3f s, %d bytes", call.method, shown_url, response.status_code,
                  response.reason, seconds, received)  # fmt: skip
        if own:
            self.auth.on_response(prepared, response)  # type: ignore[union-attr]
        return response


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A session-level auth that changes nothing; its presence stops requests from reading ``~/.netrc``."""
    return request


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    params: Mapping[str, Any] | None
    data: Any
    headers: Mapping[str, str]
    stream: bool
    timeout: float | tuple[float, float]
    authenticate: bool


def _rewinder(data: Any) -> Callable[[], None] | None:
    """A function putting a body back to its start for a repeat, or None when it cannot be repeated."""
    if data is None or isinstance(data, bytes | str | bytearray | Mapping | list):
        return lambda: None
    if hasattr(data, "read"):
        try:
            position = data.tell()
            data.seek(position)
        except (AttributeError, OSError, ValueError):
            return None
        return lambda: data.seek(position)
    return None  # an iterator or generator: consumed by the first attempt


def _retry_delay(exc: RemoteError, policy: RetryPolicy, attempt: int, slept: float, repeatable: bool) -> float | None:
    """Seconds to wait before repeating a failed call, or None to give up now."""
    if not exc.transient or attempt >= policy.max_attempts:
        return None
    if not repeatable and not (isinstance(exc, TransportError) and not exc.request_sent):
        return None
    retry_after = getattr(exc, "retry_after", None)
    delay = min(retry_after, policy.max_retry_after) if retry_after is not None else policy.backoff(attempt - 1)
    if slept + delay > policy.max_total_delay:
        return None
    return delay


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "…"


def _body_size(prepared: requests.PreparedRequest) -> int:
    body = prepared.body
    if isinstance(body, bytes | str):
        return len(body)
    return int(prepared.headers.get("Content-Length") or 0)


# -- answers -------------------------------------------------------------------------------------------------------


def json_of(response: requests.Response) -> Any:
    """The decoded JSON body of an answer; :class:`ProtocolError` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type", "no content type")
        start = response.text[:80]
        method = response.request.method if response.request else "?"
        url = mask_url(response.url or "")
        raise ProtocolError(
            f"{method} {url} answered {response.status_code} with {kind}, not JSON: {start!r}"
        ) from None
    except requests.RequestException as exc:
        raise translate_exception(exc, "GET", mask_url(response.url or "")) from None


def iter_bytes(response: requests.Response, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The body of a streamed answer in chunks, errors translated into :class:`RemoteError`; closes it."""
    try:
        yield from response.iter_content(chunk_size)
    except requests.RequestException as exc:
        raise translate_exception(exc, response.request.method or "GET", mask_url(response.url or "")) from None
    finally:
        response.close()
