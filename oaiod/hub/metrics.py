"""The hub's Prometheus metrics and ``GET /metrics``, which serves them.

Each application has a :class:`HubMetrics` with a registry of its own (``app.state.metrics``), so several hubs in
one process (tests, the daemon's embedded hub) never share or clash over counters. Label values come from small,
fixed sets only — a route's template (``/api/hub/versions/{oaio_id}``, never the id), the method, the status —
so a client cannot grow the number of series, and no user name, device id or object id ever becomes a label.

Who may read ``/metrics`` (:func:`may_read_metrics`): a request with ``Authorization: Bearer TOKEN`` where TOKEN
is the hub's metrics token (``oaiod hub serve --metrics-token-file FILE``), from any address; without the token,
only a request from a loopback address that no proxy forwarded (no ``Forwarded``, ``X-Forwarded-For`` or
``X-Real-IP`` header): a reverse proxy on the same machine must not make the metrics public.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import Message, Scope, Send

from oaiod.hub.errors import Forbidden

METRICS_PATH = "/metrics"
#: seconds; up to a minute, since a change-feed long poll lasts up to ``long_poll_max`` (60 s)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})  #: any other counts as "other"
UNMATCHED = "unmatched"  #: the route label of a path that is no route (every 404 of an unknown path)
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")  #: a proxy passed the request on


class HubMetrics:
    """Every metric of one hub application; ``waiters`` reads the change feed's parked polls at each scrape."""

    def __init__(self, waiters: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "oaiod_hub_requests", "Answered requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "oaiod_hub_request_duration_seconds",
            "From the request's arrival to the end of its answer",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge("oaiod_hub_requests_in_progress", "Requests being handled now", registry=registry)
        self.conflicts = Counter(
            "oaiod_hub_commit_conflicts",
            "409 answers: a write not based on the stored newest version, an id registered already",
            ["route"],
            registry=registry,
        )
        self.blob_received = Counter(
            "oaiod_hub_blob_received_bytes", "Blob store bytes received from clients (uploads)", registry=registry
        )
        self.blob_sent = Counter(
            "oaiod_hub_blob_sent_bytes", "Blob store bytes sent to clients (downloads)", registry=registry
        )
        feed = Gauge("oaiod_hub_feed_waiters", "Change-feed long polls waiting now", registry=registry)
        feed.set_function(lambda: float(waiters()))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if status == 409:
            self.conflicts.labels(route).inc()

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


def counting_sent(send: Send, counter: Counter) -> Send:
    """``send`` that adds the bytes of each body chunk to ``counter`` (a download's bytes, as they go out)."""

    async def counted(message: Message) -> None:
        if message["type"] == "http.response.body":
            counter.inc(len(message.get("body", b"")))
        await send(message)

    return counted


async def counting_chunks(chunks: AsyncIterator[bytes], counter: Counter) -> AsyncIterator[bytes]:
    """``chunks`` as they come, each one's size added to ``counter`` (an upload's bytes, as they arrive)."""
    async for chunk in chunks:
        counter.inc(len(chunk))
        yield chunk


def hub_metrics(request: Request) -> HubMetrics:
    metrics: HubMetrics = request.app.state.metrics
    return metrics


def scope_metrics(scope: Scope) -> HubMetrics:
    """The metrics of the application serving ``scope`` (for a response, which sees no request)."""
    metrics: HubMetrics = scope["app"].state.metrics
    return metrics


def may_read_metrics(request: Request, token: str) -> bool:
    """The ``/metrics`` access rule of the module docstring."""
    if token:
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, f"Bearer {token}".encode()):
            return True
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:  # not an address (a test transport's client name)
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


router = APIRouter()


@router.get(
    METRICS_PATH,
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        403: {"description": "neither from loopback (unproxied) nor with the metrics token"},
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this hub process (text format); loopback or the metrics token only."""
    if not may_read_metrics(request, request.app.state.settings.metrics_token):
        raise Forbidden("metrics are served to loopback, or with the hub's metrics token (Authorization: Bearer)")
    return Response(hub_metrics(request).exposition(), media_type=CONTENT_TYPE_LATEST)
