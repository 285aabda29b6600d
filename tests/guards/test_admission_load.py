"""The admission-load gauge and the model's measured cost, as ``/metrics`` exports them."""

from __future__ import annotations

import aiohttp
import numpy as np
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from prometheus_client.parser import text_string_to_metric_families
from support import ServerFactory, base_url, make_settings

from streamer.edge.handshake import SERVICES
from streamer.pipeline.asr import AsrRequest


async def _gauges(server: TestServer) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url(server)}/metrics") as r:
        text = await r.text()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


async def test_model_cost_is_measured_from_batches_and_exported(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(asr_calibrate=True), asr_engine=FakeAsr(delay=0.2))
    before = await _gauges(server)
    assert before["streamer_admission_load"] == 0.0  # no session held
    assert before["streamer_model_cost_per_input_second"] == 0.0  # nothing measured yet (a fake engine)
    batcher = server.app[SERVICES].asr_batcher
    await batcher.submit_final("s", ("transcribe", "en", "default"), AsrRequest(np.zeros(32000, np.float32)))
    cost = (await _gauges(server))["streamer_model_cost_per_input_second"]
    assert 0.2 / 2.0 <= cost < 1.0  # a 0.2 s call for 2 s of input
    assert batcher.snapshot().cost_per_input_s == cost


async def test_without_calibration_admission_waits_for_the_sessions_own_cost(
    make_server: ServerFactory,
) -> None:
    server = await make_server(make_settings(asr_calibrate=False), asr_engine=FakeAsr(delay=0.2))
    batcher = server.app[SERVICES].asr_batcher
    await batcher.submit_final("s", ("transcribe", "en", "default"), AsrRequest(np.zeros(32000, np.float32)))
    assert batcher.snapshot().cost_per_input_s is None
    assert (await _gauges(server))["streamer_model_cost_per_input_second"] == 0.0
