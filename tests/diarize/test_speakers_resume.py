"""A diarized session resumed on another instance keeps its speakers' numbers: the clusters travel with
the durable session state (``DurableState.speakers``), written with each final, restored on the claim."""

from __future__ import annotations

import numpy as np
import pytest
from session.doubles import services

from streamer.guards.load import LoadMeter
from streamer.pipeline.speakers import SpeakerClusters, SpeakerState
from streamer.pipeline.speakers_encoder import EMBED_DIM
from streamer.protocol import SessionConfig, TranscriptFinal
from streamer.session.durable import DurableSessions, DurableState
from streamer.session.runtime import StreamSession


def voice(k: int) -> np.ndarray:
    v = np.zeros(EMBED_DIM, np.float32)
    v[k] = 1.0
    return v


def final(seq: int) -> TranscriptFinal:
    return TranscriptFinal(
        segment_id=seq,
        seq=seq,
        text="x",
        language="en",
        audio_start_ms=seq * 1000,
        audio_end_ms=seq * 1000 + 900,
    )


def test_the_clusters_state_round_trips_and_keeps_the_labels() -> None:
    first = SpeakerClusters()
    assert [first.assign(voice(k), weight=2.0) for k in (3, 7, 3)] == [0, 1, 0]
    again = SpeakerClusters()
    again.restore(first.state())
    assert again.count == 2
    assert [again.assign(voice(k), weight=2.0) for k in (7, 3, 9)] == [1, 0, 2]


def mix(x: float, y: float) -> np.ndarray:
    v = voice(3) * x + voice(4) * y
    return v / np.linalg.norm(v)


def test_a_merged_speaker_stays_merged_after_a_resume() -> None:
    first = SpeakerClusters(threshold=0.8, merge_threshold=0.85)
    # one voice: its second turn (0.75 like its first) founds a speaker, its third pulls the two together
    assert [first.assign(v, weight=w) for v, w in ((voice(3), 2.0), (mix(0.75, 0.66), 2.0))] == [0, 1]
    assert first.assign(mix(0.9, 0.436), weight=6.0) == 0  # joined 1, then 1 merged into 0
    again = SpeakerClusters(threshold=0.8, merge_threshold=0.85)
    again.restore(first.state())
    assert again.assign(mix(0.75, 0.66), weight=1.0) == 0 and again.count == 2


@pytest.mark.parametrize(
    "bad",
    [
        [(1.0, [0.0] * 3, None)],
        [(0.0, [0.0] * EMBED_DIM, None)],
        [(1.0, [float("nan")] * EMBED_DIM, None)],
        [(1.0, [1.0] * EMBED_DIM, None)] * 9,
        [(1.0, [1.0] * EMBED_DIM, 0)],  # merged into itself
    ],
)
def test_a_malformed_state_is_refused(bad: SpeakerState) -> None:
    with pytest.raises(ValueError):
        SpeakerClusters().restore(bad)


async def test_a_resume_on_another_instance_keeps_speaker_zero_as_speaker_zero() -> None:
    async with services() as svc:
        config = SessionConfig(language="en", diarize=True)
        session = StreamSession("sess_1", "key", config, svc)
        session.speakers.clusters.assign(voice(3), weight=2.0)  # as two finals' parts would
        session.speakers.clusters.assign(voice(7), weight=2.0)
        await DurableSessions(svc, instance_id="a").journal(session).record(final(1))

        record = await svc.backend.load_session_state("sess_1")
        assert record is not None
        state = DurableState.model_validate_json(record.state)
        elsewhere = DurableSessions(svc, instance_id="b").restore("sess_1", state, [], LoadMeter())
        clusters = elsewhere.speakers.clusters
        assert clusters.count == 2
        assert [clusters.assign(voice(k), weight=2.0) for k in (7, 3)] == [1, 0]


async def test_a_damaged_stored_speaker_state_numbers_afresh_and_keeps_the_session() -> None:
    async with services() as svc:
        state = DurableState(
            key_id="key",
            config=SessionConfig(language="en", diarize=True),
            seq=1,
            transcribed_until_ms=900,
            next_segment_id=2,
            started_at=0.0,
            speakers=[(1.0, [0.0] * 5, None)],
        )
        session = DurableSessions(svc, instance_id="b").restore("sess_1", state, [], LoadMeter())
        assert session.speakers.clusters.count == 0 and session.seq == 1
