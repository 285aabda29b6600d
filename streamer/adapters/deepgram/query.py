"""Deepgram listen v1's query options: which this server honours, which it refuses, and the words Deepgram
uses for a refusal.

Every option of Deepgram's current reference (the deepgram-sdk's ``listen.v1`` ``connect`` parameters) is
in exactly one of :data:`SUPPORTED` and :data:`REFUSED`; ``tests/adapters/test_options_table.py`` fails
on an SDK option in neither. A refused or unknown option is a ``400`` before the upgrade, never ignored:
code written for Deepgram must not get something other than it asked for.
"""

from __future__ import annotations

from multidict import MultiMapping

from streamer.errors import ConfigError, InvalidAudioError, SessionIdleError, StreamerError
from streamer.protocol import CloseCode

# honoured (deepgram_options.ListenOptions.parse reads and checks each)
SUPPORTED = frozenset(
    {
        "encoding",
        "sample_rate",
        "channels",
        "model",
        "language",
        "language_hint",
        "interim_results",
        "punctuate",
        "smart_format",
        "endpointing",
        "utterance_end_ms",
        "vad_events",
        "multichannel",
        "diarize",
        "keyterm",
        "keywords",
        "numerals",
        "profanity_filter",
        "redact",
    }
)
# Deepgram's, not implemented here: refused whatever their value
REFUSED = frozenset(
    {
        "callback",
        "callback_method",
        "detect_entities",
        "diarize_model",
        "dictation",
        "extra",
        "mip_opt_out",
        "replace",
        "search",
        "tag",
        "version",
    }
)

# Deepgram's err_code words by HTTP status (its REST errors and this server's close reasons)
ERR_CODES = {
    400: "Bad Request",
    401: "INVALID_AUTH",
    403: "INSUFFICIENT_PERMISSIONS",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
}


# pre-recorded only: honoured (the response's utterance list; filler_words=false, Deepgram's default)
PRERECORDED = frozenset({"utterances", "filler_words"})
# pre-recorded only, Deepgram's audio intelligence and layout: not implemented here, refused
PRERECORDED_REFUSED = frozenset(
    {
        "custom_intent",
        "custom_intent_mode",
        "custom_topic",
        "custom_topic_mode",
        "detect_language",
        "intents",
        "measurements",
        "paragraphs",
        "sentiment",
        "summarize",
        "topics",
        "utt_split",
    }
)


def check_query(query: MultiMapping[str], prerecorded: bool = False) -> None:
    """Refuse (``ConfigError``, a 400) an option this server does not honour, or one Deepgram lacks."""
    supported = SUPPORTED | PRERECORDED if prerecorded else SUPPORTED
    refused = REFUSED | PRERECORDED_REFUSED if prerecorded else REFUSED
    for name in dict.fromkeys(query.keys()):
        if name in refused:
            raise ConfigError(f"{name} is not supported by this server (see docs/api-deepgram.md)")
        if name not in supported:
            raise ConfigError(f"unknown query parameter {name[:64]!r}")


def close_prefix(error: StreamerError) -> str:
    """The close reason's first word, as Deepgram's: ``DATA-0000`` only for audio that cannot be decoded,
    ``NET-0001`` for no audio or message within the timeout, ``NET-0000`` when the service cannot go on
    (overloaded, model unavailable, shutting down); any other refusal is named by its err_code word
    (``TOO_MANY_REQUESTS`` for an audio or message rate or a spent quota, ``Bad Request`` for a session over
    its length, ``PAYLOAD_TOO_LARGE`` for an audio message over the frame limit)."""
    if isinstance(error, InvalidAudioError):
        return "DATA-0000"
    if isinstance(error, SessionIdleError):
        return "NET-0001"
    if error.close_code == CloseCode.TRY_AGAIN_LATER or error.status >= 500:
        return "NET-0000"
    return ERR_CODES.get(error.status, error.code.upper())
