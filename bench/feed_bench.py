"""Upload throughput of a hub with and without idle change-feed polls of other users, printed (no asserts):
``python bench/feed_bench.py``.

``oaiod hub serve`` in its own process on loopback (SQLite). ``--clients`` (10) clients, each logged in as a
user of its own, upload new versions of their own object as fast as the hub answers, for ``--seconds`` per
phase. In the phases with waiters, ``--waiters`` (500) ``hub/changes/`` polls of ``--waiter-users`` (100)
other users — 5 each, under the per-user cap — wait meanwhile. Those users can read nothing that changes, so
the hub should spend nothing on them. The phases alternate for ``--rounds`` rounds, so that machine noise hits
both alike. Target (issue 9): with the waiters, ≥ 90% of the rate without; before commits woke only the users
they concern, 200 polls of one account cut 173 uploads/s to 8.

Everything stays on 127.0.0.1; the hub and its data live in a temporary folder removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "storage"))

import storage_servers as servers  # noqa: E402

from oaiod.hub.service import HubService  # noqa: E402
from oaiod.hub.settings import HubSettings  # noqa: E402
from oaiod.model import context_encode  # noqa: E402
from tests.hub.objects import new_object, next_version  # noqa: E402

PASSWORD = "feed-bench-password-not-secret"
POLL_SECONDS = 60  #: the hub's longest poll: a waiter answers before a phase ends only if something woke it


def create_users(data_dir: Path, names: list[str]) -> None:
    """The bench's users, written before the hub process starts (faster than one CLI call each)."""
    service = HubService.open(HubSettings(data_dir=data_dir))
    try:
        for name in names:
            service.add_user(name, PASSWORD)
    finally:
        service.close()


def start_hub(data_dir: Path) -> tuple[subprocess.Popen[str], str, int]:
    port = servers.free_port()
    oaiod = [sys.executable, "-c", "from oaiod.cli import main; main()"]
    proc = subprocess.Popen([*oaiod, "hub", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    servers.wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/api/", port


def login(url: str, username: str) -> requests.Session:
    session = requests.Session()
    session.headers.update(context_encode(username, "bench", "feedbench"))
    session.get(url + "login/").raise_for_status()
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    session.post(url + "login/", json={"username": username, "password": PASSWORD}).raise_for_status()
    return session


def upload_for(url: str, sessions: list[requests.Session], objects: list[dict], seconds: float) -> float:
    """Uploads per second of all ``sessions`` together, each uploading new versions of its object in ``objects``
    (updated to the hub's last answer) in a thread of its own."""
    counts = [0] * len(sessions)
    start = threading.Barrier(len(sessions) + 1)
    deadline = 0.0

    def client(index: int, session: requests.Session) -> None:
        stored = objects[index]
        start.wait()
        while time.monotonic() < deadline:
            answer = session.post(url + "upload/", json=next_version(stored, n=counts[index]))
            answer.raise_for_status()
            stored = answer.json()
            counts[index] += 1
        objects[index] = stored

    threads = [threading.Thread(target=client, args=(i, s)) for i, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began)


class IdlePolls:
    """Long polls of users who can read nothing that changes, waiting on connections of their own (one asyncio
    loop in a thread); a poll that answers is counted and sent again."""

    def __init__(self, port: int, sessions: list[requests.Session], per_user: int, since: str) -> None:
        self.port = port
        self.requests: list[bytes] = []
        query = urlencode({"since": since, "timeout": POLL_SECONDS})
        for session in sessions:
            cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in session.cookies)
            context = "".join(f"{key}: {value}\r\n" for key, value in session.headers.items() if key[:6] == "X-OAIO")
            head = (f"GET /api/hub/changes/?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookies}\r\n"
                    f"{context}Connection: close\r\n\r\n")  # fmt: skip
            self.requests += [head.encode()] * per_user
        self.answered: dict[str, int] = {}  #: status line → count of polls that answered while the bench ran
        self.sent = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)

    async def _start(self) -> None:
        ready = [asyncio.Event() for _ in self.requests]
        self._tasks = [
            asyncio.ensure_future(self._poll(req, event)) for req, event in zip(self.requests, ready, strict=True)
        ]
        await asyncio.gather(*(event.wait() for event in ready))

    async def _poll(self, request: bytes, sent: asyncio.Event) -> None:
        while True:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                writer.write(request)
                await writer.drain()
                self.sent += 1
                sent.set()
                answer = await reader.read()
            finally:
                writer.close()
            status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
            self.answered[status] = self.answered.get(status, 0) + 1

    def stop(self) -> None:
        """Hang up every poll (the hub frees their places as it notices) and end the loop."""

        async def cancel() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10, help="uploading clients, one user each")
    parser.add_argument("--waiters", type=int, default=500, help="idle change-feed polls")
    parser.add_argument("--waiter-users", type=int, default=100, help="users the idle polls belong to")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured phase (< 60)")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    assert options.seconds < POLL_SECONDS - 10, "an idle poll must outlast a phase"
    per_user = -(-options.waiters // options.waiter_users)
    uploaders = [f"up{number:02}" for number in range(options.clients)]
    idlers = [f"idle{number:03}" for number in range(options.waiter_users)]
    with tempfile.TemporaryDirectory(prefix="oaiod-feed-bench-") as folder:
        data_dir = Path(folder) / "hub-data"
        create_users(data_dir, uploaders + idlers)
        proc, url, port = start_hub(data_dir)
        try:
            run(url, port, uploaders, idlers, per_user, options)
        finally:
            proc.terminate()
            proc.wait(30)


def run(
    url: str, port: int, uploaders: list[str], idlers: list[str], per_user: int, options: argparse.Namespace
) -> None:
    writers = [login(url, name) for name in uploaders]
    waiters = [login(url, name) for name in idlers]
    objects = []
    for name, session in zip(uploaders, writers, strict=True):
        answer = session.post(url + "register/", json=new_object(name, name="feed-bench"))
        answer.raise_for_status()
        objects.append(answer.json())
    upload_for(url, writers, objects, 1.0)  # warm up: connections, caches, the SQLite file
    print(f"oaiod hub serve (SQLite) on loopback: {len(writers)} uploading clients, {options.seconds:g} s per phase;")
    print(f"idle polls: {per_user * len(waiters)} of {len(waiters)} users ({per_user} each) who read nothing changed")
    without, with_polls = [], []
    for round_ in range(1, options.rounds + 1):
        without.append(upload_for(url, writers, objects, options.seconds))
        since = waiters[0].get(url + "oaio_stampz/").headers["X-Oaiod-Sync-Stamp"]
        polls = IdlePolls(port, waiters, per_user, since)
        polls.start()
        time.sleep(2.0)  # let the hub take them in (one session check each) before measuring
        with_polls.append(upload_for(url, writers, objects, options.seconds))
        answered = dict(polls.answered)
        polls.stop()
        print(f"  [{round_}] no waiters {without[-1]:7.1f} uploads/s   {polls.sent:4} waiting polls "
              f"{with_polls[-1]:7.1f} uploads/s   = {with_polls[-1] / without[-1]:6.1%}"
              f"{f'   polls answered early: {answered}' if answered else ''}")  # fmt: skip
    base, loaded = statistics.median(without), statistics.median(with_polls)
    print(f"median: no waiters {base:.1f} uploads/s, with {per_user * len(waiters)} waiting polls {loaded:.1f} "
          f"uploads/s: {loaded / base:.1%} of the no-waiter rate (target ≥ 90%)")  # fmt: skip


if __name__ == "__main__":
    main()
