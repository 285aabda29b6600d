"""OpenAI Realtime's server events, made from protocol v1 messages: pure (no I/O), one per connection; its
frames are made in the connection's writer, so what it knows of the items changes in the order the client
sees them.

Every utterance the session's VAD finds (or a client commit ends) is one conversation item: its start and
end become ``input_audio_buffer.speech_started`` / ``speech_stopped`` / ``committed`` and the item's
announcement, the stable prefix of its partials append-only ``...input_audio_transcription.delta``
events (never before the announcement, as at OpenAI), its final the ``.completed`` event, and a segment
that could not be transcribed ``.failed``. The shape is GA's, or beta's (``transcription_session.*``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from streamer.adapters.openai.diarized import speaker_name
from streamer.adapters.openai.state import DIARIZE_MODEL, RealtimeState
from streamer.adapters.openai.wire import new_id
from streamer.protocol import (
    ErrorEvent,
    ServerMessage,
    SpeechStarted,
    SpeechStopped,
    TokenLogprob,
    TranscriptFinal,
    TranscriptPartial,
    Warning_,
)


class _Item:
    def __init__(self, item_id: str, start_ms: int) -> None:
        self.item_id = item_id
        self.start_ms = start_ms
        self.said = ""  # the deltas sent so far (append-only)
        # OpenAI transcribes an item once it is committed, so its client knows the item before any of its
        # deltas: what is stable before the commit waits for it
        self.committed = False
        self.held = ""
        self.parts: list[str] = []  # diarized: the texts of the parts (speakers) answered so far


class EventRenderer:
    """A connection's OpenAI events: the session's settings (its latest accepted update), its shape, and
    the items its client has been told of."""

    def __init__(self, state: RealtimeState, beta: bool) -> None:
        self.state = state
        self.beta = beta
        self._items: dict[int, _Item] = {}  # segment id -> item
        self._previous_item: str | None = None
        # the client event being refused (its event_id, the param at fault) until its error is sent
        self._refused: tuple[str | None, str | None] | None = None

    def refusing(self, event_id: str | None, param: str | None) -> None:
        """The client event whose refusal is on its way: its error names it."""
        self._refused = (event_id, param)

    def take_refused(self) -> tuple[str | None, str | None]:
        """The refused event's id and param (once), or Nones."""
        refused, self._refused = self._refused or (None, None), None
        return refused

    def forget(self, segment_id: int) -> None:
        """The client cleared the open utterance: it has no item."""
        self._items.pop(segment_id, None)

    def event(self, kind: str, **fields: Any) -> str:
        return json.dumps({"type": kind, "event_id": new_id("event"), **fields})

    def session_event(self, what: Literal["created", "updated"], beta: bool) -> str:
        """``session.*`` (GA) or ``transcription_session.*`` (beta), in the shape the SDK reads."""
        if beta:
            return self.event(f"transcription_session.{what}", session=self.state.beta_config())
        return self.event(f"session.{what}", session=self.state.ga_config())

    def render(self, message: ServerMessage, session_failed: bool = False) -> list[str]:
        """The frames for one protocol v1 message (maybe none); ``session_failed``: the session's model
        failed, so the ``error`` this message carries ends it."""
        vad = self.state.turn_detection is not None
        if isinstance(message, SpeechStarted):
            item = self._items[message.segment_id] = _Item(new_id("item"), message.audio_start_ms)
            if vad:
                return [
                    self.event(
                        "input_audio_buffer.speech_started",
                        audio_start_ms=message.audio_start_ms,
                        item_id=item.item_id,
                    )
                ]
            return []
        if isinstance(message, SpeechStopped):
            item = self._item(message.segment_id, message.audio_end_ms)
            out = []
            if vad:
                out.append(
                    self.event(
                        "input_audio_buffer.speech_stopped",
                        audio_end_ms=message.audio_end_ms,
                        item_id=item.item_id,
                    )
                )
            out.extend(self._announce(item))
            return out
        if isinstance(message, TranscriptPartial):
            growing = self._items.get(message.segment_id)
            if growing is None or not message.stable_text.startswith(growing.said):
                return []
            if self.state.transcription.model == DIARIZE_MODEL:
                return []  # its text comes as segments, one per speaker
            if not growing.committed:
                growing.held = message.stable_text
                return []
            return self._delta(growing, message.stable_text)
        if isinstance(message, TranscriptFinal) and message.speaker is not None:
            return self._diarized(message)
        if isinstance(message, TranscriptFinal):
            done = self._items.pop(message.segment_id, None) or _Item(new_id("item"), message.audio_start_ms)
            out = self._announce(done)  # (a final whose end was not announced: its item first)
            out += self._delta(done, message.text) if message.text.startswith(done.said) else []
            seconds = round((message.audio_end_ms - message.audio_start_ms) / 1000, 3)
            # GA only: the beta completed event has no languages
            detected = (
                [message.language] if message.language_probability is not None and not self.beta else None
            )
            out.append(self.completed(done.item_id, message.text, seconds, detected, message.logprobs))
            return out
        if isinstance(message, Warning_) and message.segment_id is not None:
            failed = self._items.pop(message.segment_id, None)
            if failed is None:
                return []
            return [*self._announce(failed), self._failed(failed, message.code, message.message)]
        if isinstance(message, ErrorEvent):
            out = []
            if session_failed:
                # the model failed and the session ends: every item the client awaits fails with it
                ended = [item for item in self._items.values() if item.committed]
                out = [self._failed(item, message.code, message.message) for item in ended]
                self._items = {k: item for k, item in self._items.items() if not item.committed}
            kind = (
                "server_error"
                if message.retryable or message.code == "internal_error"
                else "invalid_request_error"
            )
            event_id, param = self.take_refused()
            server_error: dict[str, Any] = {
                "type": kind,
                "code": message.code,
                "message": message.message,
                "param": param,
                "event_id": event_id,
            }
            return [*out, self.event("error", error=server_error)]
        return []

    def _item(self, segment_id: int, at_ms: int) -> _Item:
        item = self._items.get(segment_id)
        if item is None:
            item = self._items[segment_id] = _Item(new_id("item"), at_ms)
        return item

    def _announce(self, item: _Item) -> list[str]:
        """The item's commit and announcement, once, then the deltas held back for it."""
        if item.committed:
            return []
        item.committed = True
        return [*self.committed(item.item_id), *self._delta(item, item.held)]

    def _failed(self, item: _Item, code: str, message: str) -> str:
        error = {"type": "transcription_error", "code": code, "message": message}
        return self.event(
            "conversation.item.input_audio_transcription.failed",
            item_id=item.item_id,
            content_index=0,
            error=error,
        )

    def committed(self, item_id: str) -> list[str]:
        """The buffer committed as a user item, and the item as OpenAI announces it: ``.created`` (beta),
        ``.added`` then ``.done`` (GA; the audio is final at once, its transcript follows)."""
        previous, self._previous_item = self._previous_item, item_id
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        out = [self.event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)]
        kinds = (
            ("conversation.item.created",)
            if self.beta
            else ("conversation.item.added", "conversation.item.done")
        )
        out.extend(self.event(kind, previous_item_id=previous, item=item) for kind in kinds)
        return out

    def _delta(self, item: _Item, text: str) -> list[str]:
        grown = text[len(item.said) :]
        if not grown:
            return []
        item.said = text
        return [
            self.event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.item_id,
                content_index=0,
                delta=grown,
            )
        ]

    def _diarized(self, message: TranscriptFinal) -> list[str]:
        """A diarized final: one ``segment`` event per speaker's part (times from the item's start, the
        speaker as OpenAI names them: A, B, ...), then, after the last part, the item's ``completed`` with
        the parts' text. The item's deltas are the parts' texts too (the partials' are not, as a
        diarizing model streams no deltas)."""
        item = self._item(message.segment_id, message.audio_start_ms)
        item.held = ""  # the parts answer for the text
        out = self._announce(item)
        segment = self.event(
            "conversation.item.input_audio_transcription.segment",
            item_id=item.item_id,
            content_index=0,
            id=f"seg_{len(item.parts)}",
            start=round(max(0, message.audio_start_ms - item.start_ms) / 1000, 3),
            end=round(max(0, message.audio_end_ms - item.start_ms) / 1000, 3),
            text=message.text,
            speaker=speaker_name(message.speaker),
        )
        out.append(segment)
        item.parts.append(message.text)
        if message.more:
            return out
        del self._items[message.segment_id]
        text = " ".join(t for t in item.parts if t)
        seconds = round((message.audio_end_ms - item.start_ms) / 1000, 3)
        out.append(self.completed(item.item_id, text, seconds, None, message.logprobs))
        return out

    def completed(
        self,
        item_id: str,
        transcript: str,
        seconds: float,
        languages: list[str] | None = None,
        logprobs: list[TokenLogprob] | None = None,
    ) -> str:
        # a detected language is reported as OpenAI's gpt-transcribe does: languages [{"code"}]
        detected: dict[str, Any] = (
            {"languages": [{"code": code} for code in languages]} if languages is not None else {}
        )
        if logprobs is not None:  # include: item.input_audio_transcription.logprobs
            detected["logprobs"] = [
                {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())} for t in logprobs
            ]
        return self.event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": seconds},
            **detected,
        )
