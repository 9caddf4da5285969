"""A small, scriptable HTTP server on 127.0.0.1 for the tests of ``oaiod.http`` (real sockets, no mocks).

``ScriptedServer.on(method, path, *replies)`` answers the n-th request of a route with the n-th reply (the last
one repeats), or with a function of the request. A reply may be delayed (read timeouts) or may drop the
connection without an answer (a reset). ``OaioLoginRules`` adds Django-style sessions and CSRF as the oaio spec
states them, for the auth tests; the real hub is exercised in ``test_server_api.py``.
"""

from __future__ import annotations

import http.server
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str | list[str]] = field(default_factory=dict)  # a list sends the header once per item
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without answering


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    cookies: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Seen], Reply]


class ScriptedServer:
    """A threaded HTTP/1.1 server on a random free loopback port."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler | list[Reply]] = {}
        self.fallback: Handler | None = None
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.daemon_threads = True
        self._server.scripted = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def on(self, method: str, path: str, *replies: Reply | Handler) -> None:
        """Script route ``method /path``: a handler function, or replies given in order (the last repeats)."""
        if len(replies) == 1 and callable(replies[0]):
            self.routes[(method, path)] = replies[0]
        else:
            self.routes[(method, path)] = list(replies)  # type: ignore[arg-type]

    def requests_to(self, path: str, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.path == path and (method is None or s.method == method)]

    def answer(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            route = self.routes.get((seen.method, seen.path))
            if isinstance(route, list):
                reply = route.pop(0) if len(route) > 1 else route[0]
                return reply
        if route is not None:
            return route(seen)
        if self.fallback is not None:
            return self.fallback(seen)
        return Reply(404, {"error": "not_found", "reason": f"no route {seen.method} {seen.path}"})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave as separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        cookies = SimpleCookie(self.headers.get("Cookie", ""))
        seen = Seen(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
            cookies={k: m.value for k, m in cookies.items()},
        )
        reply = self.server.scripted.answer(seen)  # type: ignore[attr-defined]
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = json.dumps(reply.json).encode() if reply.json is not None else reply.body
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json" if reply.json is not None else "text/plain", **reply.headers}
            for name, values in headers.items():
                for value in values if isinstance(values, list) else [values]:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OaioLoginRules:
    """Django-style session login and CSRF as the oaio spec states them, installed as a server's fallback.

    Any GET sets a ``csrftoken`` cookie; a non-GET needs ``X-CSRFToken`` equal to it (else 403 ``csrf``);
    ``POST login/`` checks the JSON credentials, sets ``sessionid`` and rotates the token (as Django does);
    every other route needs a live session (else 403 ``not_authenticated``). ``expire()`` ends all sessions.
    """

    def __init__(self, server: ScriptedServer, users: dict[str, str], prefix: str = "/api/") -> None:
        self.server = server
        self.users = users
        self.prefix = prefix
        self.sessions: dict[str, str] = {}
        self.logins = 0
        self.routes: dict[tuple[str, str], Handler] = {}
        server.fallback = self

    def expire(self) -> None:
        self.sessions.clear()

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, self.prefix + path)] = handler

    def __call__(self, seen: Seen) -> Reply:
        headers: dict[str, str | list[str]] = {}
        if seen.method == "GET" and "csrftoken" not in seen.cookies:
            headers["Set-Cookie"] = f"csrftoken={secrets.token_hex(16)}; Path=/"
        if seen.method != "GET":
            token = seen.cookies.get("csrftoken")
            if not token or seen.headers.get("x-csrftoken") != token:
                return Reply(403, {"error": "csrf", "reason": "CSRF token missing or incorrect"})
        if seen.path == self.prefix + "login/":
            return self._login(seen, headers)
        if seen.cookies.get("sessionid") not in self.sessions:
            return Reply(403, {"error": "not_authenticated", "reason": "log in first"}, headers=headers)
        handler = self.routes.get((seen.method, seen.path))
        if handler is None:
            return Reply(404, {"error": "not_found", "reason": seen.path}, headers=headers)
        reply = handler(seen)
        reply.headers = {**headers, **reply.headers}
        return reply

    def _login(self, seen: Seen, headers: dict[str, str | list[str]]) -> Reply:
        if seen.method == "GET":
            return Reply(200, {"detail": "POST username and password"}, headers=headers)
        credentials = seen.json()
        if self.users.get(credentials.get("username")) != credentials.get("password"):
            return Reply(401, {"error": "not_authenticated", "reason": "wrong user name or password"})
        self.logins += 1
        session = secrets.token_hex(16)
        self.sessions[session] = credentials["username"]
        cookie = SimpleCookie()
        cookie["sessionid"] = session
        cookie["sessionid"]["path"] = "/"
        cookie["csrftoken"] = secrets.token_hex(16)  # Django rotates the token on login
        cookie["csrftoken"]["path"] = "/"
        set_cookie = [morsel.OutputString() for morsel in cookie.values()]
        return Reply(200, {"detail": "logged in"}, headers={"Set-Cookie": set_cookie})
