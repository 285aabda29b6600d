"""A bench session's audio as a browser's MediaRecorder sends it: one Opus container, cut into 250 ms
pieces, and which piece completes each moment of the decoded audio.

A script's PCM is encoded once (:func:`streamer_bench.encoders.encode`: WebM as MediaRecorder writes it
live, 250 ms clusters; Ogg with a page per 250 ms, as a recorder that flushes on each ``timeslice``).
The bytes are cut before the first packet of every 250 ms of audio, as ``MediaRecorder.start(250)``
hands them out, and each piece goes when its first packet's audio begins, as a PCM chunk does.

The sentence timing truth stays the script's. The decoded audio (Opus's pre-skip dropped, resampled back
to the script's rate) lines up with the PCM sample for sample (tests/bench/test_recording.py checks it),
so a final's ``audio_end_ms`` and a :class:`~streamer_bench.script.Line` speak of one clock. What changes
is which message holds a sample: the piece that completes the packet holding it (for Ogg, its page: a
demuxer reads a page whole). :meth:`Recording.cell_times` turns the pieces' send times into send times
per :data:`GRID_MS` of decoded audio, a grid on which every Opus packet starts (20 ms packets, shifted by
the 312-sample pre-skip at 48 kHz: 6.5 ms), so :func:`~streamer_bench.latency.score_session` scores a
container session by the same definition as a PCM one, with no rounding.
"""

from __future__ import annotations

import io
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from streamer_bench.encoders import encode
from streamer_bench.script import Script

CONTAINERS = ("webm", "ogg")
ENCODINGS = ("pcm16", *CONTAINERS)
PIECE_MS = 250
GRID_MS = Fraction(1, 2)
# the muxer's options (None: the encoder's live WebM). Ogg's default page holds 1 s, four timeslices; a
# page that closes at 240 ms (twelve 20 ms packets) ends where the 250 ms pieces are cut
MUXER = {"webm": None, "ogg": {"page_duration": "240000"}}


@dataclass(frozen=True)
class Packet:
    pos: int  # where its container unit (WebM block, Ogg page) starts in the stream
    start_ms: Fraction  # in the decoded audio


@dataclass(frozen=True)
class Recording:
    """One session's container stream in pieces, and which piece completes each cell of its audio."""

    container: str
    pieces: tuple[bytes, ...]
    starts_ms: tuple[float, ...]  # when each piece's audio begins (decoded ms): when it is sent
    cells: tuple[int, ...]  # per GRID_MS of decoded audio: the index of the piece that completes it

    def cell_times(self, sent: Sequence[float]) -> list[float]:
        """When each cell's piece went, given ``sent[k]`` = when piece ``k`` went; only the cells whose
        piece was sent (a session that broke off sent a prefix)."""
        return [sent[k] for k in self.cells[: bisect_left(self.cells, len(sent))]]


def record(script: Script, container: str) -> Recording:
    """``script``'s audio encoded once in ``container`` (``webm`` or ``ogg``) and cut as a recorder would."""
    if container not in MUXER:
        raise ValueError(f"the bench records {', '.join(CONTAINERS)}, not {container!r}")
    data = encode(np.frombuffer(script.pcm, "<i2"), script.rate, container, MUXER[container])
    packets = _packets(data)
    cuts, starts = [0], [0.0]
    edge = PIECE_MS
    for p in packets:
        if p.start_ms >= edge:
            if p.pos > cuts[-1]:
                cuts.append(p.pos)
                starts.append(float(p.start_ms))
            edge = (int(p.start_ms) // PIECE_MS + 1) * PIECE_MS
    pieces = tuple(data[a:b] for a, b in zip(cuts, [*cuts[1:], len(data)], strict=True))
    # a packet is whole once the next unit starts (the stream's end, for the last)
    positions = sorted({p.pos for p in packets})
    done = [
        positions[bisect_right(positions, p.pos)] if p.pos < positions[-1] else len(data) for p in packets
    ]
    piece_of = [bisect_right(cuts, end - 1) - 1 for end in done]
    first = [p.start_ms for p in packets]
    n_cells = -(-(len(script.pcm) // 2 * Fraction(1000, script.rate)) // GRID_MS)
    cells = tuple(piece_of[max(0, bisect_right(first, c * GRID_MS) - 1)] for c in range(int(n_cells)))
    return Recording(container, pieces, tuple(starts), cells)


def _packets(data: bytes) -> list[Packet]:
    """The stream's audio packets in order, each placed in the decoded audio (pre-skip removed)."""
    with av.open(io.BytesIO(data), "r") as file:
        stream = file.streams.audio[0]
        context = stream.codec_context
        skip = Fraction(context.delay, context.sample_rate)  # Opus's pre-skip, dropped by the decoder
        base = stream.time_base
        if base is None:
            raise ValueError("the encoded stream has no time base")
        out = []
        for packet in file.demux(stream):
            if packet.pts is None or packet.pos is None:
                continue  # the demuxer's end marker
            start = (packet.pts * base - skip) * 1000
            if (start / GRID_MS).denominator != 1:
                raise ValueError(f"an Opus packet starts at {float(start)} ms, off the {GRID_MS} ms grid")
            out.append(Packet(packet.pos, start))
    return out
