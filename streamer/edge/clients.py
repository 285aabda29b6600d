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
    """Parse the configured proxies (addresses or CIDR networks; ``::ffff:a.b.c.d/n`` as IPv4)."""
    return tuple(_network(p) for p in proxies)


def _network(proxy: str) -> Network:
    net = ipaddress.ip_network(proxy, strict=False)
    mapped = net.network_address.ipv4_mapped if net.version == 6 and net.prefixlen >= 96 else None
    return net if mapped is None else ipaddress.IPv4Network((mapped, net.prefixlen - 96))


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address parsed, an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 one it carries."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def canonical(address: str) -> str:
    """One spelling per client: a dual-stack listener (or proxy) reports IPv4 clients as ``::ffff:a.b.c.d``,
    and that is the IPv4 client ``a.b.c.d``, not a host in the IPv6 block ``::/64``."""
    ip = _ip(address)
    return address if ip is None else str(ip)


def trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    """Whether ``address`` is one of the trusted proxies."""
    ip = _ip(address)
    return ip is not None and any(ip in net for net in proxies)


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest address in
    ``X-Forwarded-For`` that is not itself a trusted proxy (read right to left: the left part is the
    client's own claim)."""
    peer = canonical(request.remote or "")
    if not proxies or not trusted(peer, proxies):
        return peer
    hops = [hop.strip() for line in request.headers.getall("X-Forwarded-For", []) for hop in line.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not trusted(hop, proxies):
            return canonical(hop)
    return peer


def rate_key(address: str) -> str:
    """What per-address limits count under: the address, or its /64 for IPv6 (one subscriber's block).
    An IPv4-mapped address counts as its IPv4 client (all of them share one ``::/64``)."""
    ip = _ip(address)
    if ip is None:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
