"""Schemathesis against the live server's own /openapi.json: no 5xx, every answer as documented.

The server runs on its own loop in a thread (``ThreadedServer``) with a fake ASR engine; schemathesis
generates valid and invalid requests for every documented operation (bodies, path ids, headers such as
``X-Request-ID``, ``Origin``, and the bearer key) and checks each response: never a server error, a
documented status, the documented content type and headers, and a body valid against the schema.
Two passes: one with whatever credentials schemathesis makes up, one with a valid key, so the 201 paths
are exercised too.

Each operation is driven through ``operation.as_strategy()`` under a plain ``@given``: schemathesis'
own pytest integration (``schemathesis.pytest.from_fixture``) does not run under pytest 9 (schemathesis
4.32 sets ``item._nodeid``, which pytest 9 no longer has), and ``from_asgi`` does not fit aiohttp.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fakes import FakeAsr
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import API_KEY, make_settings

from fuzz.threaded import ThreadedServer
from streamer.openapi import build_openapi
from streamer.pipeline.vad import SileroVad

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# per operation, mode and pass (18 runs, ~1,800 local requests in all); derandomized, so CI is repeatable
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture(scope="module")
def rest_server(silero: SileroVad) -> Iterator[ThreadedServer]:
    # sessions are minted, never connected: a per-key rate would only turn most of them into 429s
    server = ThreadedServer(make_settings(session_rate_per_key_per_min=0.0), asr_engine=FakeAsr(), vad=silero)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(rest_server: ThreadedServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{rest_server.url}/openapi.json")


# (method, path) of every documented operation; the live document must list the same ones
OPERATIONS = [(m.upper(), path) for path, item in build_openapi()["paths"].items() for m in item]
# only bodies and path ids can be made invalid (any string is a valid header value)
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or method == "POST"
]
POSTS = [case for case in CASES if case.values[0] == "POST"]


def _run(
    schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    mode: GenerationMode,
    headers: dict[str, str] | None = None,
) -> Counter[int]:
    """Fuzz one operation (``headers`` override generated ones); the statuses seen, to tell the inputs
    got somewhere."""
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=10)
        statuses[response.status_code] += 1

    check()
    return statuses


def test_the_live_document_lists_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    live = {(m.upper(), path) for path in api_schema for m in api_schema[path]}
    assert live == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_as_generated(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    """Whatever schemathesis generates, credentials included (mostly made-up keys: 401)."""
    _run(api_schema, method, path, mode)


@pytest.mark.parametrize(("method", "path", "mode"), POSTS)
def test_operation_with_valid_credentials(
    api_schema: schemathesis.BaseSchema,
    rest_server: ThreadedServer,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """The same with a valid API key (and the server's own Origin for the demo route), so the 201 paths
    and the config validation behind authentication are reached."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Origin": rest_server.url}
    statuses = _run(api_schema, method, path, mode, headers)
    if path in ("/v1/sessions", "/v1/demo/session") and mode is GenerationMode.POSITIVE:
        # valid configs are accepted, invalid ones (an unsupported language) refused: both sides reached
        assert statuses[201] > 0 and statuses[400] > 0, statuses


def test_no_server_errors_behind_the_scenes(rest_server: ThreadedServer) -> None:
    """After all of the above (module order): nothing crashed or was logged as an error in the server."""
    assert rest_server.loop_errors == []
    assert [r.getMessage() for r in rest_server.error_logs] == []
