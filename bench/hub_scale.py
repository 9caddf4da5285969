"""Hub throughput on PostgreSQL with one and with two hub processes, printed (no asserts):
``OAIOD_TEST_PG_URL=postgresql+psycopg://… python bench/hub_scale.py`` (``eval "$(bash .ci/postgres.sh)"`` starts one).

For 1 and 2 ``oaiod hub serve`` processes on one fresh PostgreSQL database (each process its own port; with two,
client *i* talks to hub *i* mod 2, as a load balancer would spread them), and for 1, 10 and 50 clients (threads, one
user and one kept-alive connection each), ``--seconds`` (5) of each workload:

- ``idle poll``: ``GET oaio_stampz/?since=CURSOR`` with nothing changed, what an idle daemon sends;
- ``upload``: ``POST upload/`` of a new version of the client's own object (small values; no conflicts).

Printed: requests/s, p50 and p99 latency, and the hub processes' CPU time per request (user + system, from
``/proc``; PostgreSQL's own CPU is not in it), from which the scaling on a machine with more cores can be estimated.
The clients run on the same machine as the hubs and the database and take their share of its cores.
Everything stays on 127.0.0.1; the database is dropped and the hubs' folders removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "storage"))

import storage_servers as servers  # noqa: E402

from oaiod.hub.service import HubService  # noqa: E402
from oaiod.hub.settings import HubSettings  # noqa: E402
from oaiod.model import context_encode  # noqa: E402
from tests.hub.objects import new_object, next_version  # noqa: E402

PASSWORD = "hub-scale-bench-password-not-secret"
CLIENTS = (1, 10, 50)
TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"oaiod_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_hub(db_url: str, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    port = servers.free_port()
    oaiod = [sys.executable, "-c", "from oaiod.cli import main; main()"]
    proc = subprocess.Popen([*oaiod, "hub", "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            env={**os.environ, "OAIOD_HUB_DB_URL": db_url}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    servers.wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/api/"


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def login(url: str, username: str) -> requests.Session:
    session = requests.Session()
    session.headers.update(context_encode(username, "bench", "hubscale"))
    session.get(url + "login/").raise_for_status()
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    session.post(url + "login/", json={"username": username, "password": PASSWORD}).raise_for_status()
    return session


class Client:
    """One user's session on its hub, its object and its cursor."""

    def __init__(self, url: str, username: str) -> None:
        self.url = url
        self.session = login(url, username)
        answer = self.session.post(url + "register/", json=new_object(username, name="hub-scale"))
        answer.raise_for_status()
        self.stored = answer.json()
        self.count = 0
        self.cursor = ""

    def idle_poll(self) -> None:
        answer = self.session.get(self.url + "oaio_stampz/", params={"since": self.cursor})
        answer.raise_for_status()
        assert answer.json() == [], "an idle poll found changes"

    def upload(self) -> None:
        self.count += 1
        answer = self.session.post(self.url + "upload/", json=next_version(self.stored, n=self.count))
        answer.raise_for_status()
        self.stored = answer.json()


def measure(clients: list[Client], work: Callable[[Client], None], seconds: float, pids: list[int]) -> str:
    """Run ``work`` in a loop in one thread per client for ``seconds``; the table row's numbers."""
    for client in clients:  # the hub closes connections idle for 5 s: start each row on fresh ones
        client.session.close()
    latencies: list[list[float]] = [[] for _ in clients]
    start = threading.Barrier(len(clients) + 1)
    deadline = 0.0

    def loop(index: int) -> None:
        client, mine = clients[index], latencies[index]
        start.wait()
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            work(client)
            mine.append(time.perf_counter() - sent)

    threads = [threading.Thread(target=loop, args=(index,)) for index in range(len(clients))]
    for thread in threads:
        thread.start()
    cpu_before = cpu_seconds(pids)
    began = time.monotonic()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(pids) - cpu_before
    every = sorted(latency for mine in latencies for latency in mine)
    rate = len(every) / elapsed
    p50 = statistics.median(every) * 1000
    p99 = every[min(len(every) - 1, int(len(every) * 0.99))] * 1000
    return f"{rate:8.1f} {p50:8.1f} {p99:8.1f} {cpu / len(every) * 1000:9.2f}"


def run(admin_url: str, hubs: int, seconds: float) -> None:
    most = max(CLIENTS)
    names = [f"user{number:02}" for number in range(most)]
    with fresh_database(admin_url) as db_url, tempfile.TemporaryDirectory(prefix="oaiod-hub-scale-") as folder:
        service = HubService.open(HubSettings(data_dir=Path(folder) / "admin", db_url=db_url))
        try:
            for name in names:
                service.add_user(name, PASSWORD)
        finally:
            service.close()
        procs = [start_hub(db_url, Path(folder) / f"hub{number}") for number in range(hubs)]
        try:
            pids = [proc.pid for proc, _url in procs]
            clients = [Client(procs[index % hubs][1], name) for index, name in enumerate(names)]
            cursor = clients[0].session.get(clients[0].url + "oaio_stampz/").headers["X-Oaiod-Sync-Stamp"]
            for kind, work in (("idle poll", Client.idle_poll), ("upload", Client.upload)):
                for client in clients:
                    client.cursor = cursor
                measure(clients[:10], work, 1.0, pids)  # warm up: connections, pools, caches
                for count in CLIENTS:
                    if kind == "idle poll":  # uploads of the previous rows changed things: start from now
                        cursor = clients[0].session.get(clients[0].url + "oaio_stampz/").headers["X-Oaiod-Sync-Stamp"]
                        for client in clients:
                            client.cursor = cursor
                    print(
                        f"{hubs:>5} {kind:>10} {count:>7} {measure(clients[:count], work, seconds, pids)}", flush=True
                    )
        finally:
            for proc, _url in procs:
                proc.terminate()
                proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg-url", default=os.environ.get("OAIOD_TEST_PG_URL", ""),
                        help="an admin URL of a PostgreSQL server (default: OAIOD_TEST_PG_URL)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured row")
    options = parser.parse_args()
    if not options.pg_url:
        parser.error('no PostgreSQL: set OAIOD_TEST_PG_URL (eval "$(bash .ci/postgres.sh)") or pass --pg-url')
    print(f"oaiod hub serve on PostgreSQL, loopback, {os.cpu_count()} cores shared by hubs, database and clients;")
    print(f"{options.seconds:g} s per row; CPU/req: the hub processes' CPU time per request")
    print(f"{'hubs':>5} {'workload':>10} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU/req ms':>9}")
    for hubs in (1, 2):
        run(options.pg_url, hubs, options.seconds)


if __name__ == "__main__":
    main()
