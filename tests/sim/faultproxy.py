"""A loopback HTTP proxy between one daemon and the hub that injects network faults (issue 10 §3).

Modes, set between or during rounds:

- ``ok``: every request passes;
- ``down``: every request is read and dropped unanswered (the connection closes): the hub looks offline;
- ``flaky``: each request draws one fault — a delay, a reset before it reaches the hub, a reset after the hub
  answered (the change happened, the daemon never hears it), or a ``503`` — or passes.

A hub that cannot be reached (killed, restarting) closes the daemon's connection the same way. With
:attr:`FaultProxy.at_commit` set, the next commit (``POST …/upload/``) that passes is forwarded and the callback
runs beside it a few milliseconds later (the driver kills the hub there: a hub restart mid-commit). The daemon runs
unchanged: faults live in the transport, as the project's test rules ask.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from e2e_helpers import send_relayed

MODES = ("ok", "down", "flaky")
UPSTREAM_TIMEOUT = 120.0  # longer than the hub's longest change-feed poll (60 s)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a daemon killed mid-request breaks its connection: expected here


class FaultProxy:
    """One device's path to the hub; :attr:`url` goes into that device's config. :attr:`counts` tallies the
    faults injected (``delay``, ``reset-request``, ``reset-answer``, ``503``, ``dropped``, ``passed``)."""

    def __init__(self, upstream: str, seed: int) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.mode = "ok"
        self.at_commit: Callable[[], None] | None = None  #: run once, beside the next commit forwarded
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)  # the draws' order depends on thread timing: a seed, not a replay
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                proxy._relay(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{parts.path}"
        threading.Thread(target=self.server.serve_forever, name="sim-fault-proxy", daemon=True).start()

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode

    def _draw(self) -> str:
        with self._lock:
            if self.mode == "down":
                return "dropped"
            if self.mode == "ok":
                return "passed"
            roll = self._random.random()
        if roll < 0.2:
            return "delay"
        if roll < 0.3:
            return "reset-request"
        if roll < 0.4:
            return "reset-answer"
        if roll < 0.5:
            return "503"
        return "passed"

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        fault = self._draw()
        self.counts[fault] += 1
        if fault in ("dropped", "reset-request"):
            handler.close_connection = True
            return
        if fault == "503":
            send_relayed(handler, 503, "Service Unavailable", [("Content-Type", "text/plain")], b"injected 503\n")
            return
        if fault == "delay":
            with self._lock:
                delay = self._random.uniform(0.2, 2.0)
            time.sleep(delay)
        if handler.command == "POST" and handler.path.rstrip("/").endswith("/upload"):
            self._commit_passing()
        answer = self._forward(handler, body)
        if answer is None or fault == "reset-answer":
            handler.close_connection = True
            return
        send_relayed(handler, *answer)

    def _commit_passing(self) -> None:
        with self._lock:
            callback, self.at_commit = self.at_commit, None
            delay = self._random.uniform(0.0, 0.03)
        if callback is not None:
            self.counts["commit-cut"] += 1
            threading.Timer(delay, callback).start()

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
        """The hub's answer, or None when the hub cannot be reached or broke the connection."""
        skip = ("host", "connection", "keep-alive")
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in skip}
        headers["Host"] = f"{self.host}:{self.port}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.reason, answer.getheaders(), answer.read()
        except (OSError, http.client.HTTPException):
            self.counts["hub-unreachable"] += 1
            return None
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
