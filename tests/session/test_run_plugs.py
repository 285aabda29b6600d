"""What a surface plugs into :class:`SessionRun`'s end (issue 22 item 5, a Deepgram stream's further
channels): ``last_messages`` (a session whose last message is another's says none, yet every final it had
is finalized and delivered before it lets go) and ``drain`` (steps 2, 3, asked on every ending)."""

from __future__ import annotations

import asyncio

from fakes import FakeAsr
from support import make_settings

from session.doubles import ScriptedVad, services
from session.test_end_sequence import _speak
from streamer.protocol import CloseCode, ServerMessage, SessionClosed, SessionConfig, TranscriptFinal
from streamer.session.ending import Ending
from streamer.session.outbox import Outbox
from streamer.session.quota import AudioQuota
from streamer.session.registry import SessionRegistry
from streamer.session.run import SessionRun


class _Quiet(SessionRun):
    """A run that says nothing last: its outbox hands each message to ``heard``."""

    def __init__(self, registry: SessionRegistry, session_id: str, delay_s: float) -> None:
        session = registry.open(
            session_id, "key", SessionConfig(sample_rate=8000, language="en", interim_results=False)
        )
        outbox = Outbox.typed(self._hear, maxsize=64)
        super().__init__(registry, session, outbox, AudioQuota(registry.services, "key"))
        self.heard: list[ServerMessage] = []
        self.drains: list[Ending] = []
        self._delay_s = delay_s

    async def _hear(self, message: ServerMessage) -> None:
        await asyncio.sleep(self._delay_s)  # a slow writer: the end must wait for it, not cancel it
        self.heard.append(message)

    async def drain(self, ending: Ending) -> None:
        self.drains.append(ending)
        await super().drain(ending)

    def last_messages(self, ending: Ending) -> list[ServerMessage]:
        return []


async def test_a_run_without_last_messages_still_finalizes_and_delivers_every_final() -> None:
    """Before, the finals were delivered only inside the farewell that sends ``session.closed``: a run that
    wanted no last message had to skip the farewell, and the writer was cancelled with the drained finals
    still queued."""
    vad = ScriptedVad()
    async with services(
        asr=FakeAsr(text="hi", delay=0.05), vad=vad, settings=make_settings(batching=False)
    ) as svc:
        registry = SessionRegistry(svc)
        run = _Quiet(registry, "sess_quiet", delay_s=0.05)
        run.attach()
        carried = asyncio.create_task(run.carry())
        await _speak(run.session, vad, ended=2, open_after=True)  # the third is finalized by the end
        run.finish("done", CloseCode.NORMAL)
        async with asyncio.timeout(10):
            await carried
        finals = [m for m in run.heard if isinstance(m, TranscriptFinal)]
        assert [f.seq for f in finals] == [1, 2, 3], (run.heard, run.ending, run.session.failure)
        assert not any(isinstance(m, SessionClosed) for m in run.heard)
        assert run.drains == [Ending("done", CloseCode.NORMAL)]
        assert not registry.sessions and not registry.connections and len(registry.endings) == 0
        await registry.close()


async def test_drain_is_asked_on_an_ending_that_does_not_finalize() -> None:
    """A surface that carries further sessions ends them in its drain step, whatever the ending; the
    default drain finalizes nothing when the ending says not to."""
    vad = ScriptedVad()
    async with services(asr=FakeAsr(text="hi"), vad=vad, settings=make_settings(batching=False)) as svc:
        registry = SessionRegistry(svc)
        run = _Quiet(registry, "sess_dropped", delay_s=0.0)
        run.attach()
        carried = asyncio.create_task(run.carry())
        await _speak(run.session, vad, ended=0, open_after=True)
        dropped = Ending.dropped("disconnected")
        run.ask_end(dropped)
        async with asyncio.timeout(10):
            await carried
        assert run.drains == [dropped]
        assert not any(isinstance(m, TranscriptFinal) for m in run.heard)  # nothing was finalized
        assert not registry.sessions and len(registry.endings) == 0
        await registry.close()
