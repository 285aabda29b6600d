"""Who a request comes from: the peer's address, or what a trusted proxy says the client's address is.

A forwarded header is a claim anyone can make, so it is read only from a proxy the operator named
(``STREAMER_TRUSTED_PROXIES``); from anyone else the peer address is the client. Rate limits keyed by
address (the demo route, failed authentications, connections) use this and nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    """Parse the configured proxies (addresses or CIDR networks)."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    """Whether ``address`` is one of the trusted proxies."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest address in
    ``X-Forwarded-For`` that is not itself a trusted proxy (read right to left: the left part is the
    client's own claim)."""
    peer = request.remote or ""
    if not proxies or not trusted(peer, proxies):
        return peer
    hops = [hop.strip() for line in request.headers.getall("X-Forwarded-For", []) for hop in line.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not trusted(hop, proxies):
            return hop
    return peer


def rate_key(address: str) -> str:
    """What per-address limits count under: the address, or its /64 for IPv6 (one subscriber's block)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
