"""Resume churn: dropping sessions and opening new ones must not multiply what one instance holds.

With a limit of 3, a client drops three sessions (parked, resumable), opens three new ones and resumes
the first three: six live sessions on the old code, repeatable forever. Parked sessions count, and a
resume is admitted like a start.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually
from limits.conftest import EnergyVad

from streamer.edge.handshake import REGISTRY

from .conftest import AUTH, hostile_settings

LIMIT = 3


async def _connect(
    http: aiohttp.ClientSession, server: TestServer, token: str, last_seq: int | None = None
) -> Any:
    query = f"token={token}" + ("" if last_seq is None else f"&last_seq={last_seq}")
    ws = await http.ws_connect(server.make_url(f"/v1/stream?{query}"))
    created = await ws.receive_json(timeout=5.0)
    assert created["type"] == "session.created", created
    return ws


async def test_parked_sessions_count_and_resume_is_admitted(make_server: Any) -> None:
    server: TestServer = await make_server(
        hostile_settings(max_sessions=LIMIT, resume_window_s=30.0), asr_engine=FakeAsr(), vad=EnergyVad()
    )
    registry = server.app[REGISTRY]
    async with aiohttp.ClientSession() as http:
        first: list[str] = []
        for _ in range(LIMIT):
            async with http.post(server.make_url("/v1/sessions"), json={}, headers=AUTH) as r:
                body = await r.json()
                assert r.status == 201, body
            ws = await _connect(http, server, body["token"])
            await ws.close()  # dropped without session.close: parked, resumable
            first.append(body["session_id"])
        await eventually(lambda: len(registry.parked) == LIMIT, "the dropped sessions to be parked")

        # the instance holds three sessions already: a new one is refused, before and after the upgrade
        async with http.post(server.make_url("/v1/sessions"), json={}, headers=AUTH) as r:
            body = await r.json()
            assert r.status == 503, body
            assert body["error"]["code"] == "overloaded"

        # the parked ones come back; the instance never holds more than its limit
        sockets = []
        for session_id in first:
            async with http.post(server.make_url(f"/v1/sessions/{session_id}/resume"), headers=AUTH) as r:
                body = await r.json()
                assert r.status == 201, body
            sockets.append(await _connect(http, server, body["token"], last_seq=0))
            assert len(registry.sessions) + len(registry.parked) <= LIMIT
        assert len(registry.sessions) == LIMIT
        for ws in sockets:
            await ws.close()
