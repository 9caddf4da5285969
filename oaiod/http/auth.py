"""How a client proves who it is: :class:`AuthPlugin` and its three kinds (basic, bearer token, the oaio
server's session login). One plugin may be shared by the clients of one server; logging in is serialised."""

from __future__ import annotations

import abc
import logging
import re
import threading
from collections.abc import Callable

import requests
import requests.cookies

from oaiod.errors import ConfigError
from oaiod.http.client import NO_RETRY, SAFE_METHODS, HttpClient
from oaiod.http.errors import AuthError, HTTPStatusError, ProtocolError
from oaiod.http.redact import mask_url
from oaiod.secrets import MASK, Secret

log = logging.getLogger("oaiod.http")  # one logger for the whole HTTP layer (operators and tests filter on it)


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


#: cookies a new login keeps: the oaiod hub's device token, which lets this client log in while someone else's
#: failed guesses have its user's name or its address throttled (oaiod.hub.loginguard)
KEPT_COOKIES = frozenset({"oaiod_device"})
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
        kept = [cookie for cookie in self.cookies if cookie.name in KEPT_COOKIES]
        self.cookies.clear()
        for cookie in kept:
            self.cookies.set_cookie(cookie)
        credentials = {"username": self.username, "password": self.password.reveal()}
        try:
            # one attempt: the call that needed the login retries it (nested retries made an unreachable server
            # take 4 x 4 x 4 attempts, over 100 s, before a cycle could say "offline")
            client.request(
                "POST", self.login_path, json=credentials, authenticate=False, idempotent=True, retry=NO_RETRY
            )
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
                # sets the csrftoken cookie; one attempt, the enclosing call retries
                client.request("GET", request.url, authenticate=False, retry=NO_RETRY)
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
