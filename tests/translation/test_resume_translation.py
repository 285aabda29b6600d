"""The project's client follows the documented resume rule: a translation in flight at the drop arrives."""

from __future__ import annotations

from typing import Any

from faults.streams import eventually
from support import API_KEY, base_url

from streamer.client import StreamerClient
from streamer.edge.handshake import REGISTRY
from streamer.pipeline.mt import CT2Translator
from streamer.protocol import TranslationFinal

from .conftest import NumberingAsr, SpyEngine, events_until, send_audio, speech

UTTERANCE = "en_utt1.wav"


async def test_a_translation_in_flight_when_the_connection_drops_arrives_after_resume(
    make_server: Any, nllb: CT2Translator
) -> None:
    """docs/protocol.md: a client that saw a final but not yet its translation resumes with
    ``last_seq - 1`` (translations of ``last_seq`` itself are not replayed) and ignores the repeated final.
    The client used to send ``last_seq``, and the translation was lost."""
    spy = SpyEngine(nllb, delay=0.5)
    server = await make_server(asr_engine=NumberingAsr(), mt_engine=spy)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "translate_to": ["es"]})
        await send_audio(stream, speech(UTTERANCE))
        await events_until(stream, lambda evs: any(e["type"] == "transcript.final" for e in evs))
        await stream.ws.close()  # the translation is still being made (the model takes half a second)
        assert stream.last_seq == 1
        assert not any(e["type"] == "translation.final" for _, e in stream.events)
        assert stream.resume_from == 0
        # the translation is made while nobody is connected: it can only come by replay
        session = server.app[REGISTRY].find(stream.info.session_id)
        assert session is not None
        await eventually(
            lambda: any(isinstance(m, TranslationFinal) for m in session.history), "the translation", 10
        )

        resumed = await client.resume(stream)
        events = await events_until(resumed, lambda evs: any(e["type"] == "translation.final" for e in evs))
        await resumed.ws.close()

    (translation,) = [e for e in events if e["type"] == "translation.final"]
    assert translation["seq"] == 1 and translation["language"] == "es"
    # the final itself was delivered before the drop: the replay of it is not delivered again
    assert not [e for e in events if e["type"] == "transcript.final"]
    assert resumed.last_seq == 1 and resumed.resume_from == 1
