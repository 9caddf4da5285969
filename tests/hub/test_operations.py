"""Operating the hub (issue 12 §3): ``/healthz``, ``/readyz``, Prometheus ``/metrics`` and the access log, against
a real hub over loopback."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from oaiod.cli import main
from oaiod.hub.server import HubServer
from oaiod.hub.settings import DB_FILE_NAME
from oaiod.model import context_encode, now_stamp
from tests.hub.blobhelpers import STAMP, download, minted, put_large, wait_for_no_downloads
from tests.hub.objects import new_object, next_version

pytestmark = pytest.mark.integration


def root(hub: HubServer) -> str:
    return f"http://{hub.host}"


def samples(hub: HubServer, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the hub's ``/metrics``: (name, sorted labels) → value."""
    answer = requests.get(root(hub) + "/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


# -- health and readiness ---------------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_without_session_or_cookie(hub: HubServer) -> None:
    health = requests.get(root(hub) + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = requests.get(root(hub) + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "checks": {"database": "ok", "blobs": "ok"}}
    for answer in (health, ready):
        assert "set-cookie" not in answer.headers  # no CSRF cookie for a load balancer's probes
        assert answer.headers["X-Oaiod-Hub"]
    assert "csrftoken" in requests.get(hub.url + "login/", timeout=10).cookies  # the API still hands it out


def test_readyz_503_while_the_sqlite_file_is_gone(hub_factory: Callable[..., HubServer]) -> None:
    own = hub_factory()  # SQLite in its data folder
    database = own.data_dir / DB_FILE_NAME
    database.rename(database.with_name("moved-away"))
    try:
        answer = requests.get(root(own) + "/readyz", timeout=30)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["error"] == "not_ready" and body["checks"]["blobs"] == "ok"
        assert body["checks"]["database"] != "ok" and "database:" in body["reason"]
        assert requests.get(root(own) + "/healthz", timeout=10).status_code == 200  # the process is fine
    finally:
        database.with_name("moved-away").rename(database)
    assert requests.get(root(own) + "/readyz", timeout=30).status_code == 200


def test_readyz_503_while_the_blob_folder_is_gone(hub_factory: Callable[..., HubServer]) -> None:
    own = hub_factory()
    uploads = own.data_dir / "blobs" / "uploads"
    uploads.rename(uploads.with_name("elsewhere"))
    try:
        answer = requests.get(root(own) + "/readyz", timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.json()["checks"] == {"database": "ok", "blobs": "FileNotFoundError: No such file or directory"}
    finally:
        uploads.with_name("elsewhere").rename(uploads)
    assert requests.get(root(own) + "/readyz", timeout=30).status_code == 200


@pytest.mark.postgres
def test_readyz_503_when_the_postgres_database_was_dropped(
    postgres_url: str, hub_factory: Callable[..., HubServer]
) -> None:
    own = hub_factory(db_url=postgres_url)
    assert requests.get(root(own) + "/readyz", timeout=30).status_code == 200
    url = sa.engine.make_url(postgres_url)
    admin = sa.create_engine(os.environ["OAIOD_TEST_PG_URL"], isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
    admin.dispose()
    for _ in range(2):  # the pooled connections were cut, then no new one can be made
        answer = requests.get(root(own) + "/readyz", timeout=30)
        assert answer.status_code == 503, answer.text
        checks = answer.json()["checks"]
        assert checks["database"].startswith("OperationalError") and checks["blobs"] == "ok"
        assert "oaiod:oaiod" not in answer.text and str(url.port) not in answer.text  # no URL, no password
    assert requests.get(root(own) + "/healthz", timeout=10).status_code == 200


# -- metrics ----------------------------------------------------------------------------------------------------


def test_metrics_count_routes_statuses_conflicts_and_blob_bytes(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob = sessions["bob"]
    stored = bob.post("register/", json=new_object("bob")).json()
    assert bob.post("upload/", json=next_version(stored, text="two")).status_code == 200
    stale = bob.post("upload/", json=next_version(stored, text="three"))  # based on the first version again
    assert stale.status_code == 409
    oaio_id = stored["oaio_id"]
    assert bob.get(f"hub/versions/{oaio_id}").status_code == 200
    assert bob.get("hub/versions/no-such-object").status_code == 404
    data = os.urandom(300_000)
    name = f"{minted('bob')}/{STAMP}/big.bin"
    put_large(bob, name, data)
    assert download(bob, name).content == data
    wait_for_no_downloads(hub)

    found = samples(hub)
    route = "/api/hub/versions/{oaio_id}"
    assert value(found, "oaiod_hub_requests_total", method="GET", route=route, status="200") == 1
    assert value(found, "oaiod_hub_requests_total", method="GET", route=route, status="404") == 1
    assert value(found, "oaiod_hub_requests_total", method="POST", route="/api/upload/", status="409") == 1
    assert value(found, "oaiod_hub_requests_total", method="POST", route="/api/upload/", status="200") == 1
    assert value(found, "oaiod_hub_commit_conflicts_total", route="/api/upload/") == 1
    assert value(found, "oaiod_hub_request_duration_seconds_count", method="POST", route="/api/upload/") == 2
    assert value(found, "oaiod_hub_blob_received_bytes_total") == len(data)
    assert value(found, "oaiod_hub_blob_sent_bytes_total") == len(data)
    assert value(found, "oaiod_hub_requests_in_progress") == 1  # this scrape
    text = requests.get(root(hub) + "/metrics", timeout=10).text
    for raw in (oaio_id, "no-such-object", "bob", "alice", "big.bin"):  # no id, name or user as a label value
        assert raw not in text, raw


def test_metrics_feed_waiters(hub: HubServer, sessions: dict[str, Any]) -> None:
    bob, carol = sessions["bob"], sessions["carol"]
    answers: list[Any] = []
    polls = [
        threading.Thread(target=lambda s=s: answers.append(s.get("hub/changes/", params={"since": now_stamp()})))
        for s in (bob, carol, carol)
    ]
    for poll in polls:
        poll.start()
    deadline = time.monotonic() + 20
    while value(samples(hub), "oaiod_hub_feed_waiters") != 3:
        assert time.monotonic() < deadline, "the polls never showed as waiting"
        time.sleep(0.05)
    for user in ("bob", "carol"):  # a commit that concerns each wakes their polls
        sessions[user].post("register/", json=new_object(user))
    for poll in polls:
        poll.join(timeout=30)
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert value(samples(hub), "oaiod_hub_feed_waiters") == 0


def test_metrics_only_for_loopback_or_the_token(hub_factory: Callable[..., HubServer]) -> None:
    token = "scrape-" + os.urandom(8).hex()
    own = hub_factory(metrics_token=token, trusted_proxies=("127.0.0.1",))
    url = root(own) + "/metrics"
    assert requests.get(url, timeout=10).status_code == 200  # loopback, not proxied
    for forwarded in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=1.2.3.4"}, {"X-Real-IP": "1.2.3.4"}):
        refused = requests.get(url, headers=forwarded, timeout=10)  # what a proxy on this machine passes on
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        wrong = requests.get(url, headers={**forwarded, "Authorization": f"Bearer {token}x"}, timeout=10)
        assert wrong.status_code == 403
        allowed = requests.get(url, headers={**forwarded, "Authorization": f"Bearer {token}"}, timeout=10)
        assert allowed.status_code == 200 and "oaiod_hub_requests_total" in allowed.text
    assert token not in repr(own.settings)


def test_each_hub_has_its_own_registry(hub: HubServer, hub_factory: Callable[..., HubServer]) -> None:
    other = hub_factory()
    for _ in range(3):
        requests.get(root(hub) + "/healthz", timeout=10)
    assert value(samples(hub), "oaiod_hub_requests_total", method="GET", route="/healthz", status="200") == 3
    assert value(samples(other), "oaiod_hub_requests_total", method="GET", route="/healthz", status="200") == 0


# -- access log -------------------------------------------------------------------------------------------------


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "oaiod.hub.access"]


def test_access_log_one_line_per_request_and_no_secret(
    hub: HubServer, hub_session: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alice = hub_session(hub, "alice", login=False)
    password = hub.users["alice"]
    alice.login(password)
    session_cookie, csrf = alice.cookies["sessionid"], alice.cookies["csrftoken"]
    query_secret = "qs-" + os.urandom(8).hex()
    alice.get("oaio_stampz/", params={"since": now_stamp(), "token": query_secret})
    hidden_id = minted("carol", "hidden-name")
    acting = context_encode("bob", "dev1", "testapp")  # a supervisor acting for bob
    assert alice.get(f"hub/versions/{hidden_id}", headers=acting).status_code == 404
    requests.post(hub.url + "login/", json={"username": "bob", "password": "not-" + password}, timeout=10)
    deadline = time.monotonic() + 10
    while len(access_lines(caplog)) < 5 and time.monotonic() < deadline:  # the last line follows the answer
        time.sleep(0.02)

    lines = access_lines(caplog)
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("GET", "/api/login/", 200),  # the CSRF cookie
        ("POST", "/api/login/", 200),
        ("GET", "/api/oaio_stampz/", 200),
        ("GET", "/api/hub/versions/{oaio_id}", 404),
        ("POST", "/api/login/", 403),  # no CSRF token
    ]
    assert all(set(line) >= {"ms", "client", "in", "out"} and line["client"] == "127.0.0.1" for line in lines)
    assert lines[1]["in"] > 0 and lines[2]["out"] > 0
    assert lines[2]["user"] == "alice" and "login" not in lines[2]
    assert lines[3]["user"] == "bob" and lines[3]["login"] == "alice"
    assert "user" not in lines[0] and "user" not in lines[4]
    logged = caplog.text + "".join(repr(record.__dict__) for record in caplog.records)
    for secret in (password, session_cookie, csrf, query_secret, "hidden-name"):
        assert secret not in logged
    assert not [record for record in caplog.records if record.name.startswith("uvicorn.access")]


def test_probes_log_at_debug(hub: HubServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oaiod.hub.access")
    for path in ("/healthz", "/readyz", "/metrics"):
        requests.get(root(hub) + path, timeout=10)
    deadline = time.monotonic() + 10
    while len(access_lines(caplog)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    records = [record for record in caplog.records if record.name == "oaiod.hub.access"]
    assert [(json.loads(r.getMessage())["route"], r.levelno) for r in records] == [
        (path, logging.DEBUG) for path in ("/healthz", "/readyz", "/metrics")
    ]


# -- oaiod hub serve ------------------------------------------------------------------------------------------


def test_serve_reads_the_metrics_token_file_and_logs_each_request_once(tmp_path: Path) -> None:
    token = "t" + os.urandom(12).hex()
    token_file = tmp_path / "metrics-token"
    token_file.write_text(token + "\n")
    command = [sys.executable, "-m", "oaiod.cli", "hub", "serve", "--data-dir", str(tmp_path / "hub"), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--metrics-token-file", str(token_file)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    listening = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "oaiod hub listening on" in line:
                listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert listening.wait(60), "".join(lines)
        found = re.search(r"listening on http://(\S+)/api/", "".join(lines))
        assert found is not None
        base = f"http://{found.group(1)}"
        proxied = {"X-Forwarded-For": "198.51.100.4"}
        assert requests.get(base + "/metrics", headers=proxied, timeout=10).status_code == 403
        scraped = requests.get(base + "/metrics", headers={**proxied, "Authorization": f"Bearer {token}"}, timeout=10)
        assert scraped.status_code == 200
        assert requests.get(base + "/api/hub/versions/x", timeout=10).status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        reader.join(timeout=10)
    logged = "".join(lines)
    assert logged.count('"route":"/api/hub/versions/{oaio_id}"') == 1  # INFO: the CLI's log shows it, once
    assert "uvicorn.access" not in logged and "GET /api/hub/versions/x" not in logged  # uvicorn's own log is off
    assert token not in logged


@pytest.mark.parametrize("content", ["", "short", "has a space in it 1234567890"])
def test_serve_refuses_a_bad_metrics_token_file(tmp_path: Path, content: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    result = CliRunner().invoke(
        main, ["hub", "serve", "--data-dir", str(tmp_path / "hub"), "--metrics-token-file", str(token_file)]
    )
    assert result.exit_code == 2 and "at least 16 printable characters" in result.output
