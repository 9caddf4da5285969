"""One HTTP layer for every remote: the oaio server (hub) and the HTTP APIs of the storage hosts.

Built on a ``requests.Session``. Each call gets a (connect, read) timeout; idempotent calls are retried with
exponential backoff and full jitter on transient failures, honouring ``Retry-After``; a call that fails
because the session or token expired logs in again once and is repeated once (the seeds' "refresh if
necessary"); one :class:`AuthPlugin` may be shared by the clients of one server. Every request is logged at
DEBUG (logger ``oaiod.http``) as a copy-pasteable ``curl`` line with passwords, tokens, cookies and
``Authorization`` masked, and timed in :attr:`HttpClient.timings`.

Exceptions (nothing returns an error string; ``err.transient`` says whether a retry may help)::

    OaiodError
    └── RemoteError                 anything from an HTTP peer
        ├── TransportError    *     connection refused or reset, DNS, TLS: no usable answer
        │   └── RequestTimeout *    no connection or no answer within the timeout
        ├── ProtocolError           an answer that breaks the protocol (not JSON, bad object, …)
        └── HTTPStatusError         a non-2xx answer: .status .body .method .url (secrets masked)
            ├── AuthError           401, or a failed login
            ├── PermissionDenied    403
            ├── NotFound            404
            ├── Conflict            409; .body holds the server's object
            ├── Gone                410
            ├── PayloadTooLarge     413
            ├── RateLimited   *     429; .retry_after in seconds (or None)
            ├── ClientError         any other 4xx
            └── ServerError   *     5xx
    (* transient = True)
"""

from __future__ import annotations

import abc
import datetime as _dt
import email.utils
import ipaddress
import json as _json
import logging
import random
import re
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
import requests.adapters
import requests.cookies

from oaiod import __version__
from oaiod.errors import ConfigError, OaiodError
from oaiod.secrets import MASK, Secret

log = logging.getLogger("oaiod.http")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer read and kept in HTTPStatusError.body
SHOWN_BODY_CHARS = 300  # characters of an error body shown in a message
USER_AGENT = f"oaiod/{__version__}"

# -- exceptions ---------------------------------------------------------------------------------------------------


class RemoteError(OaiodError):
    """Anything that went wrong talking to an HTTP peer."""

    transient: bool = False


class TransportError(RemoteError):
    """No usable answer: connection refused or reset, name resolution, TLS. ``request_sent`` is False when the
    failure happened before any byte of the request left, so even a non-idempotent call may be repeated."""

    transient = True

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class RequestTimeout(TransportError):
    """No connection (``request_sent`` False) or no answer within the timeout."""


class ProtocolError(RemoteError):
    """The peer answered, but not as the protocol promises (a body that is not JSON, an invalid object, …)."""


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


class PermissionDenied(HTTPStatusError):
    """403: logged in, but not allowed."""


class NotFound(HTTPStatusError):
    """404."""


class Conflict(HTTPStatusError):
    """409: the server kept its own state, which ``body`` holds (for the hub: ``body["object"]``)."""


class Gone(HTTPStatusError):
    """410: e.g. a ``since`` cursor older than the server keeps tombstones for."""


class PayloadTooLarge(HTTPStatusError):
    """413."""


class RateLimited(HTTPStatusError):
    """429; ``retry_after`` is how many seconds the server asked to wait, if it said."""

    transient = True


class ClientError(HTTPStatusError):
    """Any other 4xx: the request was wrong and repeating it will not help."""


class ServerError(HTTPStatusError):
    """5xx: the server failed; a retry later may succeed."""

    transient = True


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


# -- masking secrets ----------------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|cookie|credential|signature|session|csrf|upload_?id", re.I)
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-csrftoken"})


def is_secret_name(name: str) -> bool:
    """True for a field, header or parameter name that may carry a secret (password, token, key, cookie…)."""
    return name.lower() in SECRET_HEADERS or bool(_SECRET_NAME.search(name))


def mask_json(value: Any) -> Any:
    """A copy of JSON-like ``value`` with the values of secret-named keys replaced by ``***``."""
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_name(str(k)) else mask_json(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_json(v) for v in value]
    if isinstance(value, Secret):
        return MASK
    return value


def mask_url(url: str) -> str:
    """``url`` without a password in its user info and with secret-named query parameters masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with the values of secret headers masked."""
    return {k: (MASK if is_secret_name(k) else v) for k, v in headers.items()}


# -- base URLs and the HTTPS rule -------------------------------------------------------------------------------


def is_loopback(hostname: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if not hostname:
        return False
    if hostname.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url_security(url: str, *, allow_insecure: bool = False, key: str = "url") -> None:
    """Refuse a URL that is not http(s), carries credentials, or is plain http to a host that is not loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"{mask_url(url)!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(key, "a URL must not carry credentials; give username and password_env/password_file")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure:
        raise ConfigError(
            key,
            f"refusing plain http to {parts.hostname}: passwords and data would cross the network unencrypted; "
            "use https:// (or set allow_insecure only on a trusted network)",
        )


def server_base_url(host_or_url: str, *, allow_insecure: bool = False) -> str:
    """The oaio API base URL for a host (``HOST[:PORT]``) or an explicit URL, always ending with ``/``.

    A bare host gets ``http://HOST/api/`` when it is loopback, else ``https://HOST/api/`` (the spec's rule,
    checked on the parsed host name rather than a string prefix). An explicit URL with no path gets ``/api/``;
    plain ``http://`` to a host that is not loopback is refused unless ``allow_insecure``.
    """
    value = host_or_url.strip()
    if not value:
        raise ConfigError("server", "no server host or URL given")
    if "://" not in value:
        hostname = urlsplit("//" + value).hostname
        value = f"{'http' if is_loopback(hostname) else 'https'}://{value.strip('/')}/api/"
    parts = urlsplit(value)
    check_url_security(value, allow_insecure=allow_insecure, key="server")
    path = parts.path if parts.path not in ("", "/") else "/api/"
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


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


# -- auth plugins -------------------------------------------------------------------------------------------------


class AuthPlugin(abc.ABC):
    """How a client proves who it is. One plugin may be shared by several clients of the same server.

    Logging in is serialised: :meth:`ensure` and :meth:`reauthenticate` run :meth:`authenticate` under a lock,
    and a client that saw its session expire re-logs in only if nobody did so since its request left.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._generation = 0  # bumped by every successful authenticate()
        self._ready = False

    @property
    def generation(self) -> int:
        return self._generation

    def authenticate(self, client: HttpClient) -> None:  # noqa: B027 - static credentials need no login
        """Obtain fresh credentials (log in); raise :class:`AuthError` when refused."""

    @abc.abstractmethod
    def apply(self, client: HttpClient, request: requests.PreparedRequest) -> None:
        """Add the credentials to a request about to be sent."""

    def needs_reauth(self, response: requests.Response) -> bool:
        """True when ``response`` says the credentials expired and a fresh :meth:`authenticate` may help."""
        return False

    def on_response(self, request: requests.PreparedRequest, response: requests.Response) -> None:  # noqa: B027
        """See every answer (e.g. to keep cookies)."""

    def forget(self) -> None:
        """Drop the credentials obtained so far; the next request logs in again."""
        with self._lock:
            self._ready = False

    def ensure(self, client: HttpClient) -> None:
        """Log in unless already done."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self._login(client)

    def reauthenticate(self, client: HttpClient, seen_generation: int) -> None:
        """Log in again, unless another client already did after ``seen_generation``."""
        with self._lock:
            if self._generation == seen_generation or not self._ready:
                self._login(client)

    def _login(self, client: HttpClient) -> None:
        self._ready = False
        self.authenticate(client)
        self._generation += 1
        self._ready = True


class BasicAuth(AuthPlugin):
    """HTTP basic auth with fixed credentials (a 401 means they are wrong: no re-login)."""

    def __init__(self, username: str, password: Secret) -> None:
        super().__init__()
        self.username = username
        self.password = password

    def apply(self, client: HttpClient, request: requests.PreparedRequest) -> None:
        header = requests.auth._basic_auth_str(self.username, self.password.reveal())
        request.headers["Authorization"] = header

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, {MASK!r})"


class BearerTokenAuth(AuthPlugin):
    """``Authorization: Bearer TOKEN``; with ``refresh`` (a callable returning a new token) a 401 renews it once."""

    def __init__(self, token: Secret | None = None, refresh: Callable[[], Secret] | None = None) -> None:
        super().__init__()
        if token is None and refresh is None:
            raise ConfigError("token", "give a token or a way to refresh it")
        self._token = token
        self._refresh = refresh
        self._ready = token is not None

    def authenticate(self, client: HttpClient) -> None:
        if self._refresh is not None:
            self._token = self._refresh()

    def apply(self, client: HttpClient, request: requests.PreparedRequest) -> None:
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token.reveal()}"

    def needs_reauth(self, response: requests.Response) -> bool:
        return response.status_code == 401 and self._refresh is not None

    def __repr__(self) -> str:
        return f"BearerTokenAuth({MASK!r})"


_NOT_LOGGED_IN = re.compile(r"not_authenticated|csrf|credentials were not provided|not logged in", re.I)


class OaioSessionAuth(AuthPlugin):
    """The oaio server's Django-style session login, exactly as the published client does it.

    Before a non-GET request without a ``csrftoken`` cookie it GETs the very URL it is about to post to; it
    sends that cookie back as ``X-CSRFToken`` (and ``Referer`` over https); ``POST login/`` with JSON
    ``{"username", "password"}`` sets the session cookie. Cookies live here, not in a client's session, so that
    every client sharing this plugin uses the same session.
    """

    login_path = "login/"
    logout_path = "logout/"

    def __init__(self, username: str, password: Secret) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.cookies = requests.cookies.RequestsCookieJar()

    def authenticate(self, client: HttpClient) -> None:
        self.cookies.clear()
        credentials = {"username": self.username, "password": self.password.reveal()}
        try:
            client.request("POST", self.login_path, json=credentials, authenticate=False, idempotent=True)
        except HTTPStatusError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise
            raise AuthError(
                exc.method, exc.url, exc.status, exc.body, f"(login of {self.username!r} refused)"
            ) from None
        log.info("logged in to %s as %s", mask_url(client.base_url), self.username)

    def logout(self, client: HttpClient) -> None:
        """End the server session; the cookies are forgotten even when the server cannot be told (that raises)."""
        with self._lock:
            try:
                if self._ready:
                    client.request("POST", self.logout_path, authenticate=False, retry=NO_RETRY)
            finally:
                self.cookies.clear()
                self._ready = False

    def csrf_token(self) -> str | None:
        token = None
        for cookie in self.cookies:
            if cookie.name == "csrftoken" and cookie.value:
                token = cookie.value
        return token

    def apply(self, client: HttpClient, request: requests.PreparedRequest) -> None:
        if request.method not in SAFE_METHODS:
            token = self.csrf_token()
            if token is None:
                assert request.url is not None
                client.request("GET", request.url, authenticate=False)  # sets the csrftoken cookie
                token = self.csrf_token()
                if token is None:
                    raise ProtocolError(f"GET {mask_url(request.url)} set no csrftoken cookie; cannot post to it")
            request.headers["X-CSRFToken"] = token
            if (request.url or "").startswith("https:"):
                request.headers["Referer"] = request.url or ""
        request.headers.pop("Cookie", None)
        request.prepare_cookies(self.cookies)

    def on_response(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        requests.cookies.extract_cookies_to_jar(self.cookies, request, response.raw)

    def needs_reauth(self, response: requests.Response) -> bool:
        if response.status_code == 401:
            return True
        if response.status_code != 403:
            return False
        text = response.text[:2000]
        if not _NOT_LOGGED_IN.search(text):
            return False
        if "csrf" in text.lower():
            self.cookies.clear()  # a stale token: fetch a new one together with the new session
        return True

    def __repr__(self) -> str:
        return f"OaioSessionAuth({self.username!r}, {MASK!r})"


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
            data = _json.dumps(json, ensure_ascii=False, allow_nan=False).encode()
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
                log.warning("%s %s failed (%s); retry %d of %d in %.1f s", method, mask_url(url), _short(exc),
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


# -- answers and errors ----------------------------------------------------------------------------------------------


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


# -- curl lines ---------------------------------------------------------------------------------------------------

_NOT_SHOWN_HEADERS = frozenset({"content-length", "accept-encoding", "connection"})


def curl_command(prepared: requests.PreparedRequest) -> str:
    """A copy-pasteable ``curl`` command for a request, with every secret replaced by ``***``."""
    words = ["curl", "-sS"]
    if prepared.method not in ("GET", None):
        words += ["-X", prepared.method] if prepared.method != "HEAD" else ["-I"]
    words.append(mask_url(prepared.url or ""))
    for name, value in prepared.headers.items():
        if name.lower() not in _NOT_SHOWN_HEADERS:
            words += ["-H", f"{name}: {MASK if is_secret_name(name) else value}"]
    body = prepared.body
    if body is not None:
        words += _curl_body(body, prepared.headers.get("Content-Type", ""))
    return " ".join(shlex.quote(word) for word in words)


def _curl_body(body: Any, content_type: str) -> list[str]:
    """curl arguments showing a body: JSON and forms masked; anything else only by its size."""
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        if "json" in content_type:
            try:
                return ["--data-raw", _json.dumps(mask_json(_json.loads(text)), ensure_ascii=False)]
            except ValueError:
                pass
        if "x-www-form-urlencoded" in content_type:
            pairs = parse_qsl(text, keep_blank_values=True)
            return ["--data-raw", urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")]
        return ["--data-binary", f"@body-of-{len(body)}-bytes"]
    return ["--data-binary", "@streamed-body"]
