"""oaiod.http against a real HTTP server on 127.0.0.1 (tests/httpfixtures.py); failures are scripted server-side.

Backoff delays are shrunk through RetryPolicy so that retries take milliseconds; no timing is asserted.
"""

from __future__ import annotations

import datetime
import io
import logging
import threading
from collections.abc import Iterator
from email.utils import format_datetime

import pytest

from oaiod import http
from oaiod.errors import ConfigError, FailureKind
from oaiod.http import (
    NO_RETRY,
    AuthError,
    BasicAuth,
    BearerTokenAuth,
    ClientError,
    HttpClient,
    NotFound,
    OaioSessionAuth,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    RetryPolicy,
    ServerError,
    TransportError,
)
from oaiod.secrets import Secret
from tests.httpfixtures import OaioLoginRules, Reply, ScriptedServer, Seen, free_port

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_delay=5.0, max_retry_after=1.0)
PASSWORD = "hunter2-TOP-SECRET"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture
def client(server: ScriptedServer) -> Iterator[HttpClient]:
    with HttpClient(server.url, retry=FAST, timeout=(2.0, 5.0)) as cli:
        yield cli


@pytest.fixture
def oaio(server: ScriptedServer) -> OaioLoginRules:
    rules = OaioLoginRules(server, {"alice": PASSWORD})
    rules.route("POST", "echo/", lambda seen: Reply(200, {"echo": seen.json()}))
    rules.route("GET", "echo/", lambda seen: Reply(200, {"detail": "POST here"}))
    rules.route("GET", "who/", lambda seen: Reply(200, {"user": rules.sessions[seen.cookies["sessionid"]]}))
    return rules


def oaio_client(server: ScriptedServer, auth: OaioSessionAuth | None = None) -> HttpClient:
    auth = auth or OaioSessionAuth("alice", Secret(PASSWORD))
    return HttpClient(server.url + "api/", auth=auth, retry=FAST, timeout=(2.0, 5.0))


# -- answers, JSON, timings ----------------------------------------------------------------------------------------


def test_json_round_trip_and_timings(server: ScriptedServer, client: HttpClient) -> None:
    server.on("POST", "/echo", lambda seen: Reply(201, {"got": seen.json()}))
    assert client.post_json("echo", {"ü": [1, 2]}) == {"got": {"ü": [1, 2]}}
    assert server.seen[0].headers["content-type"] == "application/json"
    timing = client.timings[-1]
    assert (timing.method, timing.status) == ("POST", 201)
    assert timing.url.endswith("/echo") and timing.bytes_sent > 0 and timing.bytes_received > 0
    assert timing.seconds >= 0
    client.reset_timings()
    assert not client.timings


def test_non_json_answer_is_a_protocol_error(server: ScriptedServer, client: HttpClient) -> None:
    server.on("GET", "/html", Reply(200, body=b"<html>maintenance</html>", headers={"Content-Type": "text/html"}))
    with pytest.raises(ProtocolError, match="text/html, not JSON"):
        client.get_json("html")


def test_error_carries_status_body_method_url(server: ScriptedServer, client: HttpClient) -> None:
    server.on("GET", "/missing", Reply(404, {"error": "not_found", "reason": "no such object"}))
    server.on("GET", "/text", Reply(400, body=b"plain words"))
    with pytest.raises(NotFound) as caught:
        client.get("missing")
    err = caught.value
    assert (err.status, err.method, err.body["error"]) == (404, "GET", "not_found")
    assert err.url == server.url + "missing" and not err.transient
    with pytest.raises(ClientError) as caught_text:
        client.get("text")
    assert caught_text.value.body == "plain words"


def test_status_classes() -> None:
    assert http.error_class(401) is AuthError and http.error_class(403) is PermissionDenied
    assert http.error_class(409) is http.Conflict and http.error_class(410) is http.Gone
    assert http.error_class(413) is http.PayloadTooLarge and http.error_class(418) is ClientError
    assert http.error_class(502) is ServerError
    transient = FailureKind.TRANSIENT
    assert ServerError.kind is transient and RateLimited.kind is transient
    assert TransportError.kind is transient and RequestTimeout.kind is transient and NotFound.kind is not transient


# -- retries ------------------------------------------------------------------------------------------------------


def test_503_and_429_with_retry_after_are_retried(server: ScriptedServer, client: HttpClient) -> None:
    past = format_datetime(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), usegmt=True)
    server.on(
        "GET",
        "/flaky",
        Reply(503, {"error": "internal"}, headers={"Retry-After": "0"}),
        Reply(429, {"error": "rate_limited"}, headers={"Retry-After": past}),
        Reply(200, {"ok": True}),
    )
    assert client.get_json("flaky") == {"ok": True}
    assert len(server.requests_to("/flaky")) == 3
    assert [t.status for t in client.timings] == [503, 429, 200]


def test_retries_stop_after_max_attempts(server: ScriptedServer, client: HttpClient) -> None:
    server.on("GET", "/down", Reply(429, {"error": "rate_limited"}, headers={"Retry-After": "0"}))
    with pytest.raises(RateLimited) as caught:
        client.get("down")
    assert caught.value.retry_after == 0.0
    assert len(server.requests_to("/down")) == FAST.max_attempts


def test_retry_after_beyond_the_budget_gives_up_at_once(server: ScriptedServer) -> None:
    server.on("GET", "/later", Reply(503, headers={"Retry-After": "3600"}))
    policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_total_delay=1.0, max_retry_after=3600)
    with HttpClient(server.url, retry=policy) as cli, pytest.raises(ServerError):
        cli.get("later")
    assert len(server.requests_to("/later")) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 413])
def test_permanent_errors_are_not_retried(server: ScriptedServer, client: HttpClient, status: int) -> None:
    server.on("GET", "/bad", Reply(status, {"error": "bad_request"}))
    with pytest.raises(http.HTTPStatusError) as caught:
        client.get("bad")
    assert caught.value.status == status
    assert len(server.requests_to("/bad")) == 1


def test_post_is_not_retried_on_5xx_unless_marked_idempotent(server: ScriptedServer, client: HttpClient) -> None:
    server.on("POST", "/once", Reply(500, {"error": "internal"}))
    with pytest.raises(ServerError):
        client.post("once", json={})
    assert len(server.requests_to("/once")) == 1
    server.on("POST", "/again", Reply(502), Reply(200, {"ok": 1}))
    assert client.post_json("again", {}, idempotent=True) == {"ok": 1}
    assert len(server.requests_to("/again")) == 2


def test_connection_refused_is_a_transport_error_and_retried() -> None:
    with HttpClient(f"http://127.0.0.1:{free_port()}/", retry=FAST) as cli:
        with pytest.raises(TransportError) as caught:
            cli.post("x", json={"a": 1})  # nothing was sent: even a POST may be repeated
        assert caught.value.transient and not caught.value.request_sent
        assert len(cli.timings) == FAST.max_attempts and all(t.status is None for t in cli.timings)


def test_dropped_connection_retries_get_but_not_post(server: ScriptedServer, client: HttpClient) -> None:
    server.on("GET", "/reset", Reply(drop=True), Reply(200, {"ok": True}))
    assert client.get_json("reset") == {"ok": True}
    server.on("POST", "/reset", Reply(drop=True), Reply(200, {"ok": True}))
    with pytest.raises(TransportError) as caught:
        client.post("reset", json={})
    assert caught.value.request_sent
    assert len(server.requests_to("/reset", "POST")) == 1


def test_read_timeout(server: ScriptedServer) -> None:
    server.on("GET", "/slow", Reply(200, {"late": True}, delay=1.0))
    with HttpClient(server.url, timeout=(1.0, 0.2), retry=NO_RETRY) as cli, pytest.raises(RequestTimeout) as caught:
        cli.get("slow")
    assert "no answer within the timeout" in str(caught.value)


def test_tls_failure_is_a_transport_error(server: ScriptedServer) -> None:
    cli = HttpClient(f"https://127.0.0.1:{server.port}/", retry=NO_RETRY)  # TLS against a plain HTTP server
    with cli, pytest.raises(TransportError, match="TLS failed"):
        cli.get("x")


# -- streaming bodies ---------------------------------------------------------------------------------------------


def test_file_body_is_rewound_for_a_retry_and_download_streams(server: ScriptedServer, client: HttpClient) -> None:
    payload = bytes(range(256)) * 1000
    server.on("PUT", "/blob", Reply(503), Reply(201))
    client.put("blob", data=io.BytesIO(payload))
    assert [s.body for s in server.requests_to("/blob")] == [payload, payload]
    server.on("GET", "/blob", Reply(200, body=payload, headers={"Content-Type": "application/octet-stream"}))
    response = client.get("blob", stream=True)
    assert b"".join(http.iter_bytes(response, 4096)) == payload


def test_iterator_body_is_streamed_and_never_repeated(server: ScriptedServer, client: HttpClient) -> None:
    server.on("PUT", "/chunks", Reply(503), Reply(201))
    with pytest.raises(ServerError):
        client.put("chunks", data=iter([b"ab", b"cd"]))
    assert [s.body for s in server.requests_to("/chunks")] == [b"abcd"]


# -- auth ---------------------------------------------------------------------------------------------------------


def test_oaio_login_with_csrf(server: ScriptedServer, oaio: OaioLoginRules) -> None:
    with oaio_client(server) as cli:
        assert cli.post_json("echo/", {"x": 1}) == {"echo": {"x": 1}}
    steps = [(s.method, s.path) for s in server.seen]
    assert steps == [("GET", "/api/login/"), ("POST", "/api/login/"), ("POST", "/api/echo/")]
    login, echo = server.seen[1], server.seen[2]
    assert login.json() == {"username": "alice", "password": PASSWORD}
    assert login.headers["x-csrftoken"] == login.cookies["csrftoken"]
    assert echo.headers["x-csrftoken"] == echo.cookies["csrftoken"] != login.cookies["csrftoken"]  # rotated
    assert echo.cookies["sessionid"] in oaio.sessions and "referer" not in echo.headers  # Referer only for https


def test_expired_session_logs_in_again_once(server: ScriptedServer, oaio: OaioLoginRules) -> None:
    with oaio_client(server) as cli:
        assert cli.get_json("who/") == {"user": "alice"}
        oaio.expire()
        assert cli.post_json("echo/", {"n": 2}) == {"echo": {"n": 2}}
    assert oaio.logins == 2


def test_second_refusal_after_relogin_is_an_auth_error(server: ScriptedServer, oaio: OaioLoginRules) -> None:
    oaio.route("GET", "locked/", lambda seen: Reply(401, {"error": "not_authenticated"}))
    with oaio_client(server) as cli, pytest.raises(AuthError) as caught:
        cli.get("locked/")
    assert caught.value.status == 401
    assert oaio.logins == 2 and len(server.requests_to("/api/locked/")) == 2


def test_403_forbidden_is_not_a_reason_to_log_in_again(server: ScriptedServer, oaio: OaioLoginRules) -> None:
    oaio.route("GET", "private/", lambda seen: Reply(403, {"error": "forbidden", "reason": "not yours"}))
    with oaio_client(server) as cli, pytest.raises(PermissionDenied):
        cli.get("private/")
    assert oaio.logins == 1


def test_wrong_password_is_an_auth_error_without_the_password(server: ScriptedServer, oaio: OaioLoginRules) -> None:
    wrong = "wrong-" + PASSWORD
    with oaio_client(server, OaioSessionAuth("alice", Secret(wrong))) as cli, pytest.raises(AuthError) as caught:
        cli.get("who/")
    assert "login of 'alice' refused" in str(caught.value)
    assert wrong not in str(caught.value) + repr(caught.value) + repr(cli) + repr(cli.auth)


def test_one_auth_shared_by_clients_logs_in_once_per_expiry(server: ScriptedServer, oaio: OaioLoginRules) -> None:
    auth = OaioSessionAuth("alice", Secret(PASSWORD))
    clients = [oaio_client(server, auth) for _ in range(2)]
    errors: list[BaseException] = []

    def work(cli: HttpClient) -> None:
        try:
            for n in range(3):
                assert cli.post_json("echo/", {"n": n}) == {"echo": {"n": n}}
        except BaseException as exc:  # reported below
            errors.append(exc)

    for round_ in range(2):
        threads = [threading.Thread(target=work, args=(clients[i % 2],)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert oaio.logins == round_ + 1
        oaio.expire()
    for cli in clients:
        cli.close()


def test_bearer_token_is_refreshed_once(server: ScriptedServer) -> None:
    def guarded(seen: Seen) -> Reply:
        ok = seen.headers.get("authorization") == "Bearer fresh-token"
        return Reply(200, {"ok": True}) if ok else Reply(401, {"error": "not_authenticated"})

    server.on("GET", "/data", guarded)
    auth = BearerTokenAuth(Secret("stale-token"), refresh=lambda: Secret("fresh-token"))
    with HttpClient(server.url, auth=auth, retry=FAST) as cli:
        assert cli.get_json("data") == {"ok": True}
    assert len(server.requests_to("/data")) == 2


def test_credentials_never_go_to_another_server(server: ScriptedServer) -> None:
    other = ScriptedServer()
    try:
        other.on("GET", "/presigned", Reply(200, {"ok": True}))
        with HttpClient(server.url, auth=BearerTokenAuth(Secret(PASSWORD)), retry=FAST) as cli:
            assert cli.get_json(other.url + "presigned") == {"ok": True}
        assert "authorization" not in other.seen[0].headers
    finally:
        other.close()


def test_basic_auth_401_is_final(server: ScriptedServer) -> None:
    server.on("GET", "/dav", Reply(401, {"error": "not_authenticated"}))
    with HttpClient(server.url, auth=BasicAuth("u", Secret(PASSWORD)), retry=FAST) as cli, pytest.raises(AuthError):
        cli.get("dav")
    seen = server.requests_to("/dav")
    assert len(seen) == 1 and seen[0].headers["authorization"].startswith("Basic ")


# -- logging and masking ------------------------------------------------------------------------------------------


def test_curl_log_lines_mask_every_secret(
    server: ScriptedServer, oaio: OaioLoginRules, caplog: pytest.LogCaptureFixture
) -> None:
    oaio.route("POST", "fail/", lambda seen: Reply(400, {"error": "validation", "password": seen.json()["token"]}))
    token = "tok-" + PASSWORD
    caplog.set_level(logging.DEBUG, logger="oaiod.http")
    with oaio_client(server) as cli:
        cli.post_json("echo/", {"user": "alice", "api_key": token})
        with pytest.raises(ClientError) as caught:
            cli.post("fail/", json={"token": token}, params={"access_token": token})
    curls = [r.getMessage() for r in caplog.records if r.getMessage().startswith("curl ")]
    assert any(line.startswith("curl -sS -X POST http://127.0.0.1:") and "/api/login/" in line for line in curls)
    assert any('--data-raw \'{"username": "alice", "password": "***"}\'' in line for line in curls)
    assert any("-H 'X-CSRFToken: ***'" in line and "-H 'Cookie: ***'" in line for line in curls)
    assert any("answered 200 OK in" in r.getMessage() for r in caplog.records)
    session_ids = list(oaio.sessions)
    tokens = [s.cookies.get("csrftoken") for s in server.seen if s.cookies.get("csrftoken")]
    shown = caplog.text + str(caught.value) + repr(caught.value)
    for secret in [PASSWORD, token, *session_ids, *tokens]:
        assert secret not in shown
    assert caught.value.body["password"] == token  # the raw body stays available to the caller
    assert "access_token=***" in caught.value.url


def test_mask_helpers() -> None:
    assert (
        http.mask_url("https://u:pw@h/p?since=1&X-Amz-Signature=abc") == "https://***@h/p?since=1&X-Amz-Signature=***"
    )
    assert http.mask_json({"a": {"Password": "x", "list": [{"secret_key": 1}]}, "n": 2}) == {
        "a": {"Password": "***", "list": [{"secret_key": "***"}]},
        "n": 2,
    }
    assert http.mask_headers({"Authorization": "Bearer x", "Accept": "*/*"}) == {
        "Authorization": "***",
        "Accept": "*/*",
    }


def test_parse_retry_after() -> None:
    assert http.parse_retry_after("7") == 7.0
    assert http.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert http.parse_retry_after("soon") is None and http.parse_retry_after(None) is None


# -- the HTTPS rule -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost:8000", "http://localhost:8000/api/"),
        ("127.0.0.1:9", "http://127.0.0.1:9/api/"),
        ("hub.example.org", "https://hub.example.org/api/"),
        ("localhost.example.org", "https://localhost.example.org/api/"),  # a prefix is not loopback
        ("https://hub.example.org", "https://hub.example.org/api/"),
        ("https://hub.example.org/oaio/api", "https://hub.example.org/oaio/api/"),
        ("http://[::1]:8000/api/", "http://[::1]:8000/api/"),
    ],
)
def test_server_base_url(given: str, expected: str) -> None:
    assert http.server_base_url(given) == expected


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"refusing plain http to hub\.example\.org"):
        http.server_base_url("http://hub.example.org/api/")
    assert http.server_base_url("http://hub.lan:80", allow_insecure=True) == "http://hub.lan:80/api/"
    with pytest.raises(ConfigError, match="refusing plain http"):
        HttpClient("http://10.0.0.1/")
    with pytest.raises(ConfigError, match="must not carry credentials"):
        HttpClient("https://user:pw@hub.example.org/")
