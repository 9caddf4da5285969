"""Schema-driven fuzzing: schemathesis reads the hub's ``/api/openapi.json`` and sends every route generated
requests — valid ones and ones that break the schema — as a logged-in user, over loopback HTTP. No answer may be a
5xx: a client's mistake is always the hub's own 4xx JSON answer (docs/hub-api.md, Errors).

Bounded: :data:`EXAMPLES` generated requests per route, derandomized (the same requests every run), so a CI run
costs about a minute on two cores and a failure reproduces. The document itself is checked against the routes in
``test_openapi_document_covers_every_route``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import fastapi.routing
import pytest
import requests
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings

from oaiod.hub.app import create_app
from oaiod.hub.openapi import BATCH_MEDIA_TYPE, NO_BODY, REQUEST_BODIES
from oaiod.hub.server import HubServer
from oaiod.hub.settings import HubSettings
from oaiod.hub.web import PREFIX as WEB_PREFIX

pytestmark = pytest.mark.integration

EXAMPLES = 30  #: generated requests per route (positive and negative data)
VERBOSE = bool(os.environ.get("OAIOD_TEST_VERBOSE"))  #: print every request's answer


@pytest.fixture
def fuzzed_hub(hub_factory: Callable[..., HubServer]) -> HubServer:
    # long polls end at once; every failed login is a 401 or 429, never a reason to stop
    return hub_factory(long_poll_max=0.05, long_poll_default=0.05)


@pytest.fixture
def bob(fuzzed_hub: HubServer, hub_session: Callable[..., Any]) -> Any:
    return hub_session(fuzzed_hub, "bob")


@pytest.fixture
def hub_schema(fuzzed_hub: HubServer) -> Any:
    schema = schemathesis.openapi.from_url(fuzzed_hub.url + "openapi.json")
    schema.config.update(base_url=fuzzed_hub.url.removesuffix("/api/"))
    schema.config.generation.update(
        modes=list(schemathesis.GenerationMode),
        max_examples=EXAMPLES,
        deterministic=True,
        with_security_parameters=False,  # the session sends the real cookies and CSRF token
        database="none",
    )
    return schema


schema = schemathesis.pytest.from_fixture("hub_schema")
schemathesis.serializer.alias(BATCH_MEDIA_TYPE, "application/octet-stream")  # a batch is bytes on the wire


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx(case: Any, fuzzed_hub: HubServer, bob: Any, hub_session: Callable[..., Any]) -> None:
    # logout/ would end bob's session for every later route: it runs on a session of its own
    session = hub_session(fuzzed_hub, "carol", login=False) if case.path == "/api/logout/" else bob
    if not session.cookies.get("csrftoken"):
        session.get("login/")
    headers = {"X-CSRFToken": session.cookies["csrftoken"]}
    response = case.call(session=session, headers=headers, timeout=30)
    if VERBOSE:
        print("fuzz", case.method, case.path, response.status_code, response.text[:120].replace("\n", " "))
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])


def _api_routes(app: Any) -> set[tuple[str, str, bool]]:
    """``(method, path, include_in_schema)`` of every FastAPI route of ``app``, included routers too; not the web
    app's HTML pages (under ``/web/``, and ``/`` that leads there: for browsers; their API twins are in the
    document)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:  # older FastAPI copies included routes into app.routes
        found = [(route, route) for route in app.routes if isinstance(route, APIRoute)]
    else:
        found = [(ctx, ctx.original_route) for ctx in contexts(app.routes) if isinstance(ctx.original_route, APIRoute)]
    found = [(at, route) for at, route in found if not at.path_format.startswith(WEB_PREFIX) and at.path_format != "/"]
    return {(method.lower(), at.path_format, route.include_in_schema) for at, route in found for method in at.methods}


def test_openapi_document_covers_every_route(tmp_path: Any) -> None:
    app = create_app(HubSettings(data_dir=tmp_path))
    document = app.openapi()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    routes = _api_routes(app)
    shown = {(method, path) for method, path, in_schema in routes if in_schema}
    assert documented == shown and len(shown) > 30
    # only the GET twins of changing routes (they hand out the CSRF cookie) stay out of the document
    changing = {re.sub(r"\{\w+\}", "{}", path) for method, path in shown if method != "get"}
    hidden = {(method, re.sub(r"\{\w+\}", "{}", path)) for method, path, in_schema in routes if not in_schema}
    assert hidden and {method for method, _path in hidden} == {"get"}
    assert {path for _method, path in hidden} <= changing
    for method, path in shown:  # every changing route says what it reads
        if method in ("post", "put"):
            assert (method, path) in REQUEST_BODIES or (method, path) in NO_BODY, (method, path)


def test_openapi_document_is_served(fuzzed_hub: HubServer) -> None:
    answer = requests.get(fuzzed_hub.url + "openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.json()["paths"]["/api/login/"]["post"]["requestBody"]
