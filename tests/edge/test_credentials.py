"""One reading of what a request presents, for every surface (issue 22 item 4)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from streamer.edge.credentials import authorization, offered_subprotocols, retry_after


def _request(*headers: tuple[str, str]) -> web.Request:
    return make_mocked_request("GET", "/", headers=CIMultiDict(headers))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", ("bearer", "abc")),
        ("token  abc ", ("token", "abc")),
        ("  Bearer abc", ("bearer", "abc")),
        ("Bearer", ("bearer", "")),
        ("", ("", "")),
    ],
)
def test_authorization_is_scheme_and_credential(header: str, expected: tuple[str, str]) -> None:
    assert authorization(_request(("Authorization", header))) == expected


def test_without_a_header_there_is_no_credential() -> None:
    assert authorization(_request()) == ("", "")


def test_subprotocols_from_every_header_in_order() -> None:
    """A client (or a proxy) may send the offer as several headers: all of them count, in order."""
    request = _request(("Sec-WebSocket-Protocol", "token, abc"), ("Sec-WebSocket-Protocol", " realtime ,"))
    assert offered_subprotocols(request) == ["token", "abc", "realtime"]


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.2, "2"), (59.01, "60")]
)
def test_retry_after_never_asks_to_come_back_early(seconds: float, header: str) -> None:
    assert retry_after(seconds) == header
