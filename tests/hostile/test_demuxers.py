"""FFmpeg is never left to pick a demuxer: scripts and network descriptions are refused unread."""

from __future__ import annotations

import io

import pytest

from streamer.errors import InvalidAudioError
from streamer.pipeline.containers import UNDECODABLE, open_input, sniff

HOSTILE = {
    # read a file from the server's working directory and transcribe it
    "ffconcat": b"ffconcat version 1.0\nfile 'tests/fixtures/en_utt1.wav'\n",
    # bind UDP ports and wait for RTP
    "sdp": b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
    # a few bytes of script that synthesize hours of tone
    "sbg": b"-SE\nbase: 200/10\nalpha: 150/3\nNOW base\n+1:00:00 alpha\n",
    "hls": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n",
    "garbage": bytes(range(256)) * 4,
    "empty": b"",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_only_supported_containers_reach_ffmpeg(body: bytes) -> None:
    assert sniff(body[:12]) is None
    with pytest.raises(InvalidAudioError) as refused:
        open_input(io.BytesIO(body))
    assert refused.value.message.startswith(UNDECODABLE)


def test_a_truncated_container_is_refused_with_the_same_words() -> None:
    with pytest.raises(InvalidAudioError) as refused:
        open_input(io.BytesIO(b"RIFF\x00\x00\x00\x00WAVEfmt "))
    assert refused.value.message.startswith(UNDECODABLE)
