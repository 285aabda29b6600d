"""streamer/session/durable.py without servers: write-through, takeover, restore, re-sent audio."""

from __future__ import annotations

import dataclasses

import pytest
from support import make_settings

from session.doubles import services
from streamer.errors import SessionNotFoundError
from streamer.guards.load import LoadMeter
from streamer.guards.ratelimit import AudioPacer
from streamer.protocol import SessionConfig, TranscriptFinal, TranslationFinal
from streamer.services import Services
from streamer.session.durable import DurableSessions, DurableState, ResentAudio, kept_pacer
from streamer.session.runtime import StreamSession
from streamer.state.backend import BackendUnavailableError, MemoryBackend


class DownBackend(MemoryBackend):
    """A backend whose session-state writes fail as an unreachable Redis would."""

    async def save_session_state(self, *args: object, **kwargs: object) -> bool:
        raise BackendUnavailableError("connection refused")


def final(seq: int, start: int, end: int) -> TranscriptFinal:
    return TranscriptFinal(
        segment_id=seq + 1, seq=seq, text=f"s{seq}", language="en", audio_start_ms=start, audio_end_ms=end
    )


def new_session(svc: Services, sid: str = "sess_1") -> StreamSession:
    return StreamSession(sid, "key", SessionConfig(language="en"), svc)


async def test_each_final_is_written_with_the_clock_and_seq_it_leaves() -> None:
    async with services() as svc:
        session = new_session(svc)
        durable = DurableSessions(svc, instance_id="a")
        journal = durable.journal(session)
        await journal.record(final(1, 100, 900))
        await journal.record(TranslationFinal(segment_id=2, seq=1, language="de", text="eins"))
        record = await svc.backend.load_session_state("sess_1")
        assert record is not None and record.owner == "a" and len(record.messages) == 2
        state = DurableState.model_validate_json(record.state)
        assert (state.seq, state.transcribed_until_ms, state.next_segment_id) == (1, 900, 3)
        # parked: the clock is the transcribed-up-to point, and anyone may take it
        await journal.park(30.0, finalized=False)
        assert (await svc.backend.load_session_state("sess_1")).owner == ""  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_an_unreachable_backend_never_stops_the_session(policy: str) -> None:
    async with services(settings=make_settings(redis_policy=policy)) as svc:
        svc = dataclasses.replace(svc, backend=DownBackend())
        session = new_session(svc)
        journal = DurableSessions(svc, instance_id="a").journal(session)
        await session.on_result(final(1, 0, 500))  # type: ignore[misc]
        await journal.touch()
        assert journal.state.seq == 1 and not journal.lost


async def test_a_session_taken_over_is_no_longer_written_by_its_old_instance() -> None:
    async with services() as svc:
        old = DurableSessions(svc, instance_id="a")
        journal = old.journal(new_session(svc))
        await journal.record(final(1, 0, 500))
        await svc.backend.beat("b", 60.0)
        assert (await svc.backend.claim_session_state("sess_1", "b", 60.0)).outcome == "claimed"  # a died
        await journal.record(final(2, 600, 900))
        assert journal.lost
        record = await svc.backend.load_session_state("sess_1")
        assert record is not None and record.owner == "b" and len(record.messages) == 1


async def test_a_claimed_session_carries_on_its_clock_seq_and_segment_ids() -> None:
    async with services() as svc:
        first = DurableSessions(svc, instance_id="a")
        journal = first.journal(new_session(svc))
        await journal.record(final(4, 3000, 4200))
        other = DurableSessions(svc, instance_id="b")
        state, history = await other.claim("sess_1", "key")
        session = other.restore("sess_1", state, history, LoadMeter())
        assert (session.seq, session.audio_ms, session.open_segment_id) == (4, 4200, None)
        assert [m.seq for m in session.history] == [4]
        assert session.on_result is not None  # written through from here on, by "b"
        # another key's resume does not get it
        with pytest.raises(SessionNotFoundError):
            await other.claim("sess_1", "another-key")


async def test_resent_audio_skips_what_was_transcribed_and_jumps_over_what_was_lost() -> None:
    async with services() as svc:
        session = new_session(svc)
        session.restore(0, [], 2000, 3, 0.0)  # transcribed until 2,000 ms
        resent = ResentAudio(session, audio_from_ms=1500)
        assert resent.skip_samples == 500 * 16
        frame = b"\x00\x00" * 1600 * 3  # 300 ms
        assert resent.trim(frame, 2) == b""  # 300 of the 500 ms before 2,000 ms
        assert len(resent.trim(frame[:-2], 2)) == 100 * 32 - 2  # the other 200 skipped, the rest kept
        assert resent.trim(frame[:2], 2) == frame[:2]  # one sample is audio too
        assert resent.exempt(0.3) and resent.exempt(0.3)
        assert not resent.exempt(0.1)  # only the 500 ms the session had received after 1,500 ms go unpaced

        later = new_session(svc, "sess_2")
        later.restore(0, [], 2000, 3, 0.0)
        ResentAudio(later, audio_from_ms=2600, received_ms=3000)  # the client lost 600 ms: the clock jumps
        assert later.audio_ms == 2600
        ResentAudio(later, audio_from_ms=2_060_000, received_ms=3000)  # but never past what was received
        assert later.audio_ms == 3000
        assert ResentAudio(later, None).skip_samples == 0 and later.audio_ms == 3000


async def test_a_resume_elsewhere_after_a_crash_moves_the_clock_at_most_to_the_audio_received() -> None:
    async with services() as svc:
        first = DurableSessions(svc, instance_id="a")
        session = new_session(svc)
        journal = first.journal(session)
        session.skip_to(5000)  # 5 s of audio received, one final up to 4,200 ms
        await journal.record(final(1, 3000, 4200))
        await svc.backend.beat("b", 60.0)  # instance a dies here, without parking
        other = DurableSessions(svc, instance_id="b")
        state, history = await other.claim("sess_1", "key")
        assert (state.transcribed_until_ms, state.received_ms) == (4200, 5000)
        resumed = other.restore("sess_1", state, history, LoadMeter())
        assert other.received_ms(resumed) == 5000
        resent = ResentAudio(resumed, audio_from_ms=3_600_000, received_ms=other.received_ms(resumed))
        assert resumed.audio_ms == 5000  # not an hour: the clock stops at the audio instance a received
        assert resent.allowance_s == 0.0  # and nothing after it goes unpaced
        again = new_session(svc, "sess_2")
        again.restore(0, history, 4200, 2, 0.0)
        # the client's buffer from its last final: the 800 ms a had received and not transcribed is exempt
        assert ResentAudio(again, audio_from_ms=4200, received_ms=5000).allowance_s == pytest.approx(0.8)


async def test_a_resume_elsewhere_keeps_what_was_left_of_the_pacing_burst() -> None:
    async with services() as svc:
        first = DurableSessions(svc, instance_id="a")
        session = new_session(svc)
        journal = first.journal(session)
        pacer = kept_pacer(session, AudioPacer(3.0, 10.0))
        assert pacer.admit(9.0)  # the client used its burst: 1 s left
        await journal.park(30.0)
        other = DurableSessions(svc, instance_id="b")
        state, history = await other.claim("sess_1", "key")
        resumed = other.restore("sess_1", state, history, LoadMeter())
        kept = kept_pacer(resumed, AudioPacer(3.0, 10.0), other.pacer_left_s(resumed))
        assert kept.available_s < 5.0  # not a fresh 10 s burst (1 s left, refilled 3x for the time since)
        assert kept_pacer(resumed, AudioPacer(3.0, 10.0)) is kept  # the next resume here reuses it
