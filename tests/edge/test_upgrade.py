"""The handshake every surface finishes with ``upgrade``: what was admitted is given back when it fails."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from streamer.edge.upgrade import upgrade


class _FailingSocket(web.WebSocketResponse):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    async def prepare(self, request: web.BaseRequest) -> None:  # type: ignore[override]
        raise self.error


@pytest.mark.parametrize("error", [ConnectionResetError("peer left"), asyncio.CancelledError()])
async def test_a_failed_handshake_gives_back_what_was_admitted(error: BaseException) -> None:
    given_back: list[str] = []

    async def give_back() -> None:
        given_back.append("slot")

    request = make_mocked_request("GET", "/v1/stream")
    with pytest.raises(type(error)):
        await upgrade(request, _FailingSocket(error), give_back)
    assert given_back == ["slot"]
