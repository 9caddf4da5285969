"""Who the client is and whether it came over https, when the hub sits behind a reverse proxy.

A request's ``X-Forwarded-For`` and ``X-Forwarded-Proto`` headers are anyone's claim: they count only when the
connection comes from a proxy the operator named (``oaiod hub serve --trusted-proxy ADDR``). Without one named,
nothing trusts them — loopback included (uvicorn's own proxy-header handling, which trusts 127.0.0.1 by default,
is switched off in :mod:`oaiod.hub.server`), so the per-address login limit cannot be dodged by rotating a header.

:class:`ForwardedHeaders` rewrites the ASGI scope's ``client`` and ``scheme`` once, outermost, so every later
reader (the login throttle, ``Secure`` cookies, ``request.base_url``) sees the client and scheme the proxy saw.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses (``10.0.0.5``, ``::1``) or networks (``10.0.0.0/8``); raises ``ValueError`` naming a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is neither an IP address nor a network (10.0.0.0/8)") from None
    return tuple(networks)


class TrustedProxies:
    """The proxies whose forwarded headers count; empty trusts none."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = parse_trusted_proxies(entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """The client address: the rightmost ``X-Forwarded-For`` entry that is not a trusted proxy.

        Entries left of it were written by the client and prove nothing. An entry that is no IP address ends
        the walk at the last trusted hop (a misconfigured proxy), so a forged value never becomes the client.
        """
        client = peer
        for entry in reversed(forwarded_for.split(",")):
            hop = entry.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return client
            client = hop
            if hop not in self:
                return hop
        return client


class ForwardedHeaders:
    """Pure ASGI middleware: from a trusted proxy, ``X-Forwarded-For`` sets the client, ``X-Forwarded-Proto`` the
    scheme (``http`` or ``https``, the rightmost value: the one the nearest proxy wrote)."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] == "http" and self.proxies and peer and peer[0] in self.proxies:
            scope = dict(scope)
            forwarded_for = _joined(scope, b"x-forwarded-for")
            if forwarded_for:
                scope["client"] = (self.proxies.client(peer[0], forwarded_for), 0)
            proto = _joined(scope, b"x-forwarded-proto").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        await self.app(scope, receive, send)


def _joined(scope: Scope, name: bytes) -> str:
    """Every value of a repeated header, in order, as one comma-separated list (RFC 9110 5.3)."""
    return ",".join(value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name)
