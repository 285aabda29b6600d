"""IPv4 clients behind a dual-stack listener or proxy arrive as ``::ffff:a.b.c.d``: each is its own client
for per-address limits, not one more host in a shared ``::/64`` (issue 23, item 7)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from limits.conftest import EnergyVad

from streamer.edge import clients

from .conftest import AUTH, hostile_settings
from .test_demo import demo_start
from .test_key_guessing import WRONG

GUESSER = "::ffff:203.0.113.7"
HONEST = "::ffff:198.51.100.9"


def test_a_mapped_address_counts_as_its_ipv4_client() -> None:
    rate_key = clients.rate_key
    assert rate_key(GUESSER) == rate_key("203.0.113.7") == "203.0.113.7"
    assert rate_key(GUESSER) != rate_key(HONEST)
    assert rate_key("::FFFF:cb00:7107") == "203.0.113.7"  # however it is spelt
    # a real IPv6 client still counts under its /64, and what is not an address is left alone
    assert rate_key("2001:db8::1") == rate_key("2001:db8::2") == "2001:db8::/64"
    assert rate_key("unix") == "unix"
    # a proxy configured in its mapped spelling is the same IPv4 proxy, whichever way it connects
    proxies = clients.networks(["::ffff:10.1.0.0/112"])
    assert clients.trusted("10.1.2.3", proxies) and clients.trusted("::ffff:10.1.2.3", proxies)


async def test_mapped_clients_do_not_share_the_failed_authentication_throttle(make_server: Any) -> None:
    settings = hostile_settings(auth_failures_per_min=5.0, trusted_proxies=("127.0.0.1",))
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        guessing = {**WRONG, "X-Forwarded-For": GUESSER}
        for _ in range(5):
            async with http.post(server.make_url("/v1/sessions"), headers=guessing) as r:
                assert r.status == 401
        honest = {**AUTH, "X-Forwarded-For": HONEST}
        async with http.post(server.make_url("/v1/sessions"), json={}, headers=honest) as r:
            assert r.status == 201, await r.text()
        # the guesser is throttled, however its address is written
        for spelling in (GUESSER, "203.0.113.7"):
            guesser = {**AUTH, "X-Forwarded-For": spelling}
            async with http.post(server.make_url("/v1/sessions"), json={}, headers=guesser) as r:
                assert r.status == 429, spelling


async def test_mapped_clients_each_get_their_own_demo_rate(make_server: Any) -> None:
    settings = hostile_settings(
        demo=True, demo_sessions_per_min=1, demo_max_sessions=50, trusted_proxies=("127.0.0.1",)
    )
    server: TestServer = await make_server(settings, asr_engine=FakeAsr(), vad=EnergyVad())
    async with aiohttp.ClientSession() as http:
        assert (await demo_start(http, server, **{"X-Forwarded-For": GUESSER}))[0] == 201
        assert (await demo_start(http, server, **{"X-Forwarded-For": GUESSER}))[0] == 429
        assert (await demo_start(http, server, **{"X-Forwarded-For": HONEST}))[0] == 201
