"""Several ``oaiod hub serve`` processes on one PostgreSQL database (issue 12 §1): real processes over loopback.

Three hubs serve one throw-away database; clients are spread over them as a load balancer would spread them:

- the same object uploaded through two hubs at once, from one base: exactly one accepted, the other 409 — over
  many trials, each with its own random head start for one side;
- one id registered through every hub at once: one 200, the others 409, never a 5xx;
- cursor chains, each poll on the next hub in turn, while hundreds of uploads commit through every hub: no
  chain misses a version committed before its poll was sent;
- the concurrency history of ``test_history`` (eight clients registering, uploading, sharing, deleting and
  polling) with every request sent to a random hub, checked by the same checker;
- a long poll parked on one hub wakes for a commit through another; failed logins through any hub count together;
- ``oaiod hub serve --workers 2`` serves one port with two processes, whose feeds wake each other.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from oaiod.hub.db import Object, Subscription, Tombstone, Version
from oaiod.hub.service import HubService
from oaiod.hub.settings import HubSettings
from tests.conftest import HubSession, fresh_postgres_database
from tests.hub.objects import new_object, next_version
from tests.hub.test_history import check_history, record_history

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

HUBS = 3
SEED = int(os.environ.get("OAIOD_CLUSTER_SEED", "12"))
UPLOAD_TRIALS = 100
REGISTER_TRIALS = 50
CHAIN_COMMITS = 250  #: uploads committed while the cursor chains run
USERS = {"alice": True, "bob": False, "carol": False}  # name -> supervisor


@dataclass
class HubProcess:
    """An ``oaiod hub serve`` process and what it logged."""

    process: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://").removesuffix("/api/")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def start_hub(db_url: str, data_dir: Path, *options: str) -> HubProcess:
    """Start ``oaiod hub serve`` on ``db_url`` (from the environment: never in ``ps``) and wait for its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "oaiod.cli", "hub", "serve", "--data-dir", str(data_dir), "--port", "0", *options],
        env={**os.environ, "OAIOD_HUB_DB_URL": db_url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    hub = HubProcess(process)
    found = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            hub.lines.append(line)
            if match := re.search(r"oaiod hub listening on (http://\S+/api/)", line):
                hub.url = match.group(1)
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(90):
        hub.stop()
        raise AssertionError("the hub did not start:\n" + "".join(hub.lines))
    return hub


@dataclass
class Cluster:
    """Hub processes on one database, and the passwords of the test users."""

    db_url: str
    hubs: list[HubProcess]
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    with fresh_postgres_database() as db_url:
        service = HubService.open(HubSettings(data_dir=root / "admin", db_url=db_url))
        passwords = {name: secrets.token_urlsafe(12) for name in USERS}
        try:
            for name, supervisor in USERS.items():
                service.add_user(name, passwords[name], supervisor=supervisor)
        finally:
            service.close()
        with ThreadPoolExecutor(HUBS) as pool:
            hubs = list(pool.map(lambda n: start_hub(db_url, root / f"hub{n}"), range(HUBS)))
        try:
            yield Cluster(db_url, hubs, passwords)
        finally:
            for hub in hubs:
                hub.stop()
            for hub in hubs:
                assert not any("Traceback" in line for line in hub.lines), "".join(hub.lines)


@dataclass
class Endpoint:
    """What :class:`HubSession` needs of a hub: its base URL."""

    url: str


def session(hub: HubProcess | Endpoint, user: str, password: str, device: str = "dev1") -> HubSession:
    """A logged-in session of ``user`` on one hub."""
    opened = HubSession(Endpoint(hub.url) if isinstance(hub, HubProcess) else hub, user, device)  # type: ignore[arg-type]
    opened.login(password)
    return opened


class SpreadSession(HubSession):
    """A client behind a load balancer: each request goes to one of the hubs, picked at random."""

    def __init__(self, urls: list[str], username: str, device: str, rng: random.Random) -> None:
        super().__init__(Endpoint(urls[0]), username, device)  # type: ignore[arg-type]
        self.urls = urls
        self.rng = rng

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.base_url = self.rng.choice(self.urls)
        return super().request(method, url, *args, **kwargs)


def _at_once(posts: list[tuple[HubSession, str, dict[str, Any]]], rng: random.Random) -> list[requests.Response]:
    """Send ``(session, route, body)`` posts from threads released together, each after its own random delay of up
    to 20 ms (the interleavings differ from trial to trial)."""
    barrier = threading.Barrier(len(posts))
    delays = [rng.random() * 0.02 for _ in posts]

    def run(index: int) -> requests.Response:
        client, route, body = posts[index]
        barrier.wait()
        time.sleep(delays[index])
        return client.post(route, json=body)

    with ThreadPoolExecutor(len(posts)) as pool:
        return list(pool.map(run, range(len(posts))))


def test_an_upload_raced_through_two_hubs_is_accepted_once(cluster: Cluster) -> None:
    rng = random.Random(SEED)
    alice = [session(hub, "alice", cluster.passwords["alice"]) for hub in cluster.hubs]
    bob = [session(hub, "bob", cluster.passwords["bob"]) for hub in cluster.hubs]
    stored = alice[0].post("register/", json=new_object("alice", name="raced")).json()
    share = {"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "U"}
    assert alice[1].post("subscribe/", json=share).ok
    outcomes = {"alice": 0, "bob": 0}
    for trial in range(UPLOAD_TRIALS):
        first, second = rng.sample(range(HUBS), 2)
        ours, theirs = next_version(stored, writer="alice", n=trial), next_version(stored, writer="bob", n=trial)
        answers = _at_once([(alice[first], "upload/", ours), (bob[second], "upload/", theirs)], rng)
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200, 409], f"trial {trial}: {[a.text[:200] for a in answers]}"
        winner = next(answer for answer in answers if answer.status_code == 200).json()
        loser = next(answer for answer in answers if answer.status_code == 409).json()
        assert loser["object"]["client_stamp"] == winner["client_stamp"], "the 409 must carry the version that won"
        outcomes[winner["client_values"]["writer"]] += 1
        stored = winner
    history = alice[2].get("hub/versions/" + requests.utils.quote(stored["oaio_id"], safe="")).json()
    assert len(history) == UPLOAD_TRIALS + 1  # one chain: every trial added exactly one version
    print(f"upload races: {UPLOAD_TRIALS} trials, won by alice {outcomes['alice']}, bob {outcomes['bob']}")


def test_an_id_registered_through_every_hub_at_once_is_registered_once(cluster: Cluster) -> None:
    rng = random.Random(SEED + 1)
    alice = [session(hub, "alice", cluster.passwords["alice"], device=f"reg{n}") for n, hub in enumerate(cluster.hubs)]
    for trial in range(REGISTER_TRIALS):
        obj = new_object("alice", name=f"claimed-{trial}")
        answers = _at_once([(client, "register/", obj) for client in alice], rng)
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200] + [409] * (HUBS - 1), f"trial {trial}: {[a.text[:200] for a in answers]}"
        assert all(a.json()["object"]["oaio_id"] == obj["oaio_id"] for a in answers if a.status_code == 409)


def test_concurrent_clients_spread_over_the_hubs_keep_the_hubs_promises(cluster: Cluster) -> None:
    _forget_every_object(cluster.db_url)  # the checker knows only what the run registered
    urls = [hub.url for hub in cluster.hubs]
    rng = random.Random(SEED + 2)
    opened: list[HubSession] = []

    def spread(user: str, device: str) -> HubSession:
        client = SpreadSession(urls, user, device, random.Random(rng.random()))
        client.login(cluster.passwords[user])
        opened.append(client)
        return client

    try:
        summary = check_history(record_history(spread, seconds=5))
    finally:
        for client in opened:
            client.close()
    print(f"history over {HUBS} hubs:", summary)


def test_cursor_chains_alternating_hubs_miss_no_commit(cluster: Cluster) -> None:
    """Writers commit through every hub as fast as they can while readers chain ``since`` cursors, each poll on
    the next hub in turn; every version whose ``upload/`` was answered before a poll was sent is in that poll's
    answer or an earlier one of its chain (with that stamp or a newer one)."""
    hubs, password = cluster.hubs, cluster.passwords
    writers = [session(hubs[n % HUBS], "alice", password["alice"], device=f"w{n}") for n in range(6)]
    objects = [writers[0].post("register/", json=new_object("alice", name=f"chained-{n}")).json() for n in range(6)]
    for obj in objects:
        share = {"oaio_id": obj["oaio_id"], "username": "carol", "access_right": "r"}
        assert writers[0].post("subscribe/", json=share).ok
    readers = [[session(hub, "carol", password["carol"], device=f"r{n}") for hub in hubs] for n in range(2)]
    committed: list[tuple[float, str, str]] = []  # (answered, oaio_id, client_stamp) of every accepted upload
    chains: list[list[tuple[float, dict[str, str]]]] = [[] for _ in readers]  # (sent, what the chain has shown)
    stop = threading.Event()

    def write(index: int) -> None:
        stored = objects[index]
        while not stop.is_set():
            if len(committed) >= CHAIN_COMMITS:
                stop.set()
                break
            answer = writers[index].post("upload/", json=next_version(stored, n=len(committed)))
            assert answer.status_code == 200, answer.text
            stored = answer.json()
            committed.append((time.monotonic(), stored["oaio_id"], stored["client_stamp"]))

    def read(index: int) -> None:
        shown: dict[str, str] = {}
        cursor, turn = None, index
        while True:
            last = stop.is_set()
            sent = time.monotonic()
            answer = readers[index][turn % HUBS].get("oaio_stampz/", params={"since": cursor} if cursor else None)
            assert answer.status_code == 200, answer.text
            for obj in answer.json():
                shown[obj["oaio_id"]] = max(obj["client_stamp"], shown.get(obj["oaio_id"], ""))
            chains[index].append((sent, dict(shown)))
            cursor, turn = answer.headers["X-Oaiod-Sync-Stamp"], turn + 1
            if last:
                return

    with ThreadPoolExecutor(len(writers) + len(readers)) as pool:
        running = [pool.submit(write, n) for n in range(len(writers))] + [pool.submit(read, n) for n in range(2)]
        stop.wait(120)
        stop.set()
        for future in running:
            future.result(timeout=60)
    assert len(committed) >= CHAIN_COMMITS
    for chain in chains:
        for sent, shown in chain:
            for answered, oaio_id, stamp in committed:
                if answered < sent:
                    assert shown.get(oaio_id, "") >= stamp, f"a chain missed {oaio_id} at {stamp}"
    polls = sum(len(chain) for chain in chains)
    print(f"cursor chains: {polls} polls alternating {HUBS} hubs, {len(committed)} commits, none missed")


def _forget_every_object(db_url: str) -> None:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for table in (Tombstone, Subscription, Version, Object):
                conn.execute(sa.delete(table))
    finally:
        engine.dispose()


def test_a_long_poll_wakes_for_a_commit_through_another_hub(cluster: Cluster) -> None:
    first, second = cluster.hubs[0], cluster.hubs[1]
    alice = session(second, "alice", cluster.passwords["alice"])
    carol = session(first, "carol", cluster.passwords["carol"])
    stored = alice.post("register/", json=new_object("alice", name="watched")).json()
    assert alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "carol", "access_right": "r"}).ok
    cursor = carol.get("oaio_stampz/").headers["X-Oaiod-Sync-Stamp"]
    for round_ in range(5):
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(carol.get, "hub/changes/", params={"since": cursor, "timeout": "30"})
            time.sleep(0.3 + random.random() * 0.2)  # parked by then, most likely; else it sees the change at once
            stored = alice.post("upload/", json=next_version(stored, text=f"v{round_}")).json()
            uploaded = time.monotonic()
            answer = poll.result(timeout=60).json()
        assert answer["changed"] is True, answer  # a poll nobody woke would answer changed: false after its 30 s
        print(f"feed woke {time.monotonic() - uploaded:.3f} s after a commit through another hub")
        cursor = answer["sync_stamp"]


def test_failed_logins_through_any_hub_count_together(cluster: Cluster) -> None:
    codes = []
    for attempt in range(11):  # login_max_failures: 10 for one name from one address
        hub = cluster.hubs[attempt % HUBS]
        guesser = HubSession(Endpoint(hub.url), "carol", "guesser")  # type: ignore[arg-type]
        codes.append(guesser.post("login/", json={"username": "carol", "password": f"guess-{attempt}"}).status_code)
    assert codes == [401] * 10 + [429]


def test_workers_serve_one_port_with_several_processes(cluster: Cluster, tmp_path: Path) -> None:
    hub = start_hub(cluster.db_url, tmp_path / "workers", "--workers", "2")
    try:
        assert "(2 worker processes)" in "".join(hub.lines)
        children = _children(hub.process.pid, 2)
        endpoint = Endpoint(hub.url)
        alice = session(endpoint, "alice", cluster.passwords["alice"], device="workers")
        stored = alice.post("register/", json=new_object("alice", name="workers")).json()
        bob = session(endpoint, "bob", cluster.passwords["bob"], device="workers")
        assert alice.post("subscribe/", json={"oaio_id": stored["oaio_id"], "username": "bob", "access_right": "r"}).ok
        cursor = bob.get("oaio_stampz/").headers["X-Oaiod-Sync-Stamp"]
        # polls on connections of their own land on either worker; the upload on one of them wakes them all
        answers: list[dict[str, Any]] = []
        polls = [
            threading.Thread(target=lambda: answers.append(_poll(endpoint, bob, cursor))) for _ in range(4)
        ]  # fmt: skip
        for poll in polls:
            poll.start()
        time.sleep(0.5)
        alice.post("upload/", json=next_version(stored, text="through a worker"))
        for poll in polls:
            poll.join(timeout=60)
        assert len(answers) == 4 and all(answer["changed"] is True for answer in answers), answers
    finally:
        assert hub.stop() == 0, "".join(hub.lines)
    assert not any(_alive(pid) for pid in children), "a worker outlived its parent"


def _poll(endpoint: Endpoint, like: HubSession, since: str) -> dict[str, Any]:
    with requests.Session() as fresh:  # a connection of its own
        fresh.headers.update(like.headers)
        fresh.cookies.update(like.cookies)
        answer = fresh.get(endpoint.url + "hub/changes/", params={"since": since, "timeout": "30"}, timeout=60)
        return answer.json()  # type: ignore[no-any-return]


def _children(pid: int, count: int) -> list[int]:
    """The ``count`` child processes of ``pid``, once they are all there."""
    deadline = time.monotonic() + 60
    while len(found := _child_pids(pid)) < count:
        assert time.monotonic() < deadline, f"{pid} has children {found}, not {count}"
        time.sleep(0.1)
    assert len(found) == count, found
    return found


def _child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
