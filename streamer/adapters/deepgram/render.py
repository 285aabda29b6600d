"""Protocol v1 messages rendered as Deepgram's live results, one renderer per audio channel.

Deepgram numbers a result's channel ``[index, count]``; with ``multichannel=true`` every channel is its own
session and its own renderer, and they share one socket.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from streamer.pipeline.textformat import Span, TextFormat, format_text, format_words
from streamer.protocol import (
    EndReason,
    ErrorEvent,
    ServerMessage,
    SessionClosed,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    Warning_,
    Word,
)


def seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def model_info(name: str) -> dict[str, str]:
    return {"name": name, "version": "streamer", "arch": "whisper"}


def render_word(
    span: Span, words: list[Word], punctuate: bool, speaker_confidence: float | None = None
) -> dict[str, Any]:
    """One ``words[]`` entry: a formatted word over the time of the words it was made from (a number
    said in three words is one, from the first's start to the last's end). With ``diarize`` it has
    ``speaker`` (and, pre-recorded only, as Deepgram does, ``speaker_confidence``)."""
    said = words[span.first : span.last + 1]
    out: dict[str, Any] = {
        "word": span.word,
        "start": seconds(said[0].start_ms),
        "end": seconds(said[-1].end_ms),
        "confidence": round(min(w.probability for w in said), 4),
        "punctuated_word": span.punctuated if punctuate else span.word,
    }
    if said[0].speaker is not None:
        out["speaker"] = said[0].speaker
        if speaker_confidence is not None:
            out["speaker_confidence"] = speaker_confidence
    return out


def alternative(
    text: str, words: list[Word], fmt: TextFormat, speaker_confidence: float | None = None
) -> dict[str, Any]:
    """One ``alternatives[]`` entry: transcript, confidence (the words' mean), words, each formatted as
    the request asked (``punctuate``, ``smart_format``, ``numerals``, ``redact``, ...)."""
    spans = format_words([w.word for w in words], fmt)
    rendered = [render_word(span, words, fmt.punctuate, speaker_confidence) for span in spans]
    confidence = sum(w.probability for w in words) / len(words) if words else 0.0
    return {"transcript": format_text(text, fmt), "confidence": confidence, "words": rendered}


class ResultRenderer:
    """One channel's results: ``Results``, ``SpeechStarted``, ``UtteranceEnd``, the Finalize answers."""

    def __init__(
        self,
        *,
        request_id: str,
        model_name: str,
        model_uuid: str,
        text_format: TextFormat,
        interim_results: bool,
        vad_events: bool,
        utterance_end_ms: int | None,
        audio_ms: Callable[[], int],
        channel: int = 0,
        channels: int = 1,
    ) -> None:
        self.request_id = request_id
        self.model_name = model_name
        self.model_uuid = model_uuid
        self.text_format = text_format
        self.interim_results = interim_results
        self.vad_events = vad_events
        self.utterance_end_ms = utterance_end_ms
        self.audio_ms = audio_ms
        self.channel = [channel, channels]
        self._starts: dict[int, int] = {}  # segment id -> audio_start_ms
        # ended segments whose final has not been rendered yet -> where the segment ended
        self._stopped: dict[int, int] = {}
        self._finalized: set[int] = set()  # segments a Finalize ended
        self._answer_after: int | None = None  # a Finalize that ended nothing is answered after this one
        # where the last final word ended, while no UtteranceEnd has followed it yet
        self._last_word_end: int | None = None
        # audio known heard in the order messages render (an utterance's end, a gap check's clock): no
        # utterance that began before it is still to be rendered
        self._heard_ms = 0
        self._gap_check_queued = False
        self._created = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    def recount(self, channels: int) -> None:
        """The stream turned out to have ``channels`` channels (a container's header said so)."""
        self.channel = [self.channel[0], channels]

    def render(self, message: ServerMessage) -> list[str]:
        out: list[dict[str, Any]] = []
        if isinstance(message, SpeechStarted):
            self._starts[message.segment_id] = message.audio_start_ms
            if self.vad_events:
                start = seconds(message.audio_start_ms)
                out.append({"type": "SpeechStarted", "channel": self.channel, "timestamp": start})
        elif isinstance(message, SpeechStopped):
            self._stopped[message.segment_id] = message.audio_end_ms
            self._heard_ms = max(self._heard_ms, message.audio_end_ms)
        elif isinstance(message, TranscriptPartial):
            if self.interim_results:
                start = self._starts.get(message.segment_id, 0)
                out.append(self._results(message.text, [], start, self.audio_ms(), final=False))
        elif isinstance(message, TranscriptFinal):
            words = message.words or []
            end = max(message.audio_end_ms, words[-1].end_ms if words else 0)
            # language=multi: each final's alternative lists its detected language, as Deepgram's do
            langs = [message.language] if message.language_probability is not None else None
            if message.audio_end_ms < self._stopped.get(message.segment_id, 0):
                # diarize split the utterance and more of it follows: final, but not its end (Deepgram's
                # speech_final, UtteranceEnd and a Finalize's answer come with the last part)
                start = message.audio_start_ms
                out.append(
                    self._results(
                        message.text, words, start, end, final=True, endpoint=False, languages=langs
                    )
                )
                return [json.dumps(m) for m in out]
            out.extend(
                self._final(
                    message.segment_id,
                    message.text,
                    words,
                    message.audio_start_ms,
                    end,
                    langs,
                    message.end_reason,
                )
            )
        elif isinstance(message, Warning_) and message.segment_id is not None:
            # speech that could not be transcribed still gets its (empty) final, as Deepgram sends them
            start = self._starts.get(message.segment_id, 0)
            out.extend(self._final(message.segment_id, "", [], start, start))
        elif isinstance(message, ErrorEvent):
            out.append({"type": "Error", "variant": message.code, "description": message.message})
        elif isinstance(message, SessionClosed):
            self._heard_ms = max(self._heard_ms, message.audio_ms)  # a gap the stream ended in
            out.extend(self._utterance_end())
            out.append(self.metadata(message.audio_ms))
        if isinstance(message, TranscriptPartial | TranscriptFinal | SpeechStopped | Warning_):
            out.extend(self._utterance_end())
        return [json.dumps(m) for m in out]

    def finalize(self, open_id: int | None) -> list[str]:
        """A ``Finalize``, rendered in its turn in the outbox: every utterance that had ended before it
        has been seen ended (``SpeechStopped``). ``open_id``, the utterance it ended, if any, answers it
        with its final; else the last final still coming does; else an empty final answers now, as
        Deepgram answers a Finalize with nothing buffered."""
        if open_id is not None:
            self._finalized.add(open_id)
        elif self._stopped:
            self._answer_after = max(self._stopped)
        else:
            return [json.dumps(self._finalize_answer())]
        return []

    def gap_check(self, heard_ms: int) -> Callable[[], list[str]] | None:
        """A check for ``UtteranceEnd`` to queue as audio arrives (a gap without words brings no message
        of its own), or None when it is not asked for or a check is queued already. ``heard_ms`` is the
        audio pushed when it was made: rendered in its turn, every ``SpeechStarted`` before it has been."""
        if self.utterance_end_ms is None or self._gap_check_queued:
            return None
        self._gap_check_queued = True
        return functools.partial(self._gap_check, heard_ms)

    def _gap_check(self, heard_ms: int) -> list[str]:
        self._gap_check_queued = False
        self._heard_ms = max(self._heard_ms, heard_ms)
        return [json.dumps(m) for m in self._utterance_end()]

    def _gap_over(self, heard_ms: int) -> bool:
        """Words were finalized, no utterance is open (its words would end the gap) and ``utterance_end_ms``
        of audio has been heard since the last word: Deepgram's gap, on the audio's clock."""
        return (
            self.utterance_end_ms is not None
            and self._last_word_end is not None
            and not self._starts
            and heard_ms - self._last_word_end >= self.utterance_end_ms
        )

    def _utterance_end(self) -> list[dict[str, Any]]:
        if self._last_word_end is None or not self._gap_over(self._heard_ms):
            return []
        last_word_end, self._last_word_end = self._last_word_end, None
        return [{"type": "UtteranceEnd", "channel": self.channel, "last_word_end": seconds(last_word_end)}]

    def _final(
        self,
        segment_id: int,
        text: str,
        words: list[Word],
        start_ms: int,
        end_ms: int,
        languages: list[str] | None = None,
        end_reason: EndReason | None = None,
    ) -> list[dict[str, Any]]:
        from_finalize = segment_id in self._finalized
        self._finalized.discard(segment_id)
        self._stopped = {s: e for s, e in self._stopped.items() if s > segment_id}
        self._starts.pop(segment_id, None)
        # Deepgram's speech_final marks an endpoint: the speaker paused. A split at the maximum length (the
        # speech goes on) and the end of the stream are final without one; a Finalize says from_finalize.
        # Unknown (a warning's empty final): counted as the pause it most often is.
        endpoint = end_reason in (None, "silence", "commit")
        out = [
            self._results(
                text,
                words,
                start_ms,
                end_ms,
                final=True,
                from_finalize=from_finalize,
                endpoint=endpoint,
                languages=languages,
            )
        ]
        self._heard_ms = max(self._heard_ms, end_ms)
        if text:  # Deepgram's gap is measured from the last word, by the audio's clock
            self._last_word_end = words[-1].end_ms if words else end_ms
        if self._answer_after is not None and segment_id >= self._answer_after:
            self._answer_after = None
            out.append(self._finalize_answer())
        return out

    def _finalize_answer(self) -> dict[str, Any]:
        """The (empty) result that answers a Finalize which found nothing to end."""
        now = self.audio_ms()
        return self._results("", [], now, now, final=True, from_finalize=True)

    def _results(
        self,
        text: str,
        words: list[Word],
        start_ms: int,
        end_ms: int,
        *,
        final: bool,
        from_finalize: bool = False,
        endpoint: bool = True,
        languages: list[str] | None = None,
    ) -> dict[str, Any]:
        alt = alternative(text, words, self.text_format)
        if languages:
            alt["languages"] = languages
        result: dict[str, Any] = {
            "type": "Results",
            "channel_index": self.channel,
            "duration": seconds(max(0, end_ms - start_ms)),
            "start": seconds(start_ms),
            "is_final": final,
            "speech_final": final and endpoint and not from_finalize,
            "channel": {"alternatives": [alt]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": model_info(self.model_name),
                "model_uuid": self.model_uuid,
            },
        }
        if final:
            result["from_finalize"] = from_finalize
        return result

    def metadata(self, audio_ms: int) -> dict[str, Any]:
        """The ``Metadata`` message that ends the stream."""
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "",
            "created": self._created,
            "duration": seconds(audio_ms),
            "channels": self.channel[1],  # (each Results names the model: the SDK's Metadata has no models)
        }
