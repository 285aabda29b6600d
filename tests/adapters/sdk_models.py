"""Strict checks of what the server sends against the official SDKs' own models.

The SDKs' models accept fields they do not know (``extra="allow"``), so validating alone proves little:
:func:`nonconformances` validates, then walks the result and names every field the model does not
declare, and every required one that is missing (pydantic's own errors).
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Iterator
from typing import Any

import pydantic
from openai.types.beta.realtime import realtime_server_event as beta_events
from openai.types.realtime import realtime_server_event as ga_events

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deepgram-sdk imports websockets' legacy client
    from deepgram.listen.v1 import types as deepgram_types


def _by_type(union: Any) -> dict[str, type[pydantic.BaseModel]]:
    """``type`` literal -> model, for a discriminated union of event models."""
    members = (
        typing.get_args(typing.get_args(union)[0]) if typing.get_origin(union) is typing.Annotated else ()
    )
    out: dict[str, type[pydantic.BaseModel]] = {}
    for model in members or typing.get_args(union):
        for literal in typing.get_args(model.model_fields["type"].annotation):
            out[literal] = model
    return out


GA_EVENTS = _by_type(ga_events.RealtimeServerEvent)
BETA_EVENTS = _by_type(beta_events.RealtimeServerEvent)
DEEPGRAM_EVENTS: dict[str, type[pydantic.BaseModel]] = {
    "Results": deepgram_types.ListenV1Results,
    "Metadata": deepgram_types.ListenV1Metadata,
    "SpeechStarted": deepgram_types.ListenV1SpeechStarted,
    "UtteranceEnd": deepgram_types.ListenV1UtteranceEnd,
    "Error": deepgram_types.ListenV1Error,
}


def _extras(value: Any, where: str) -> Iterator[str]:
    if isinstance(value, pydantic.BaseModel):
        for name in value.__pydantic_extra__ or {}:
            yield f"{where}.{name}: not in {type(value).__name__}"
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _extras(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _extras(item, f"{where}.{key}")


def nonconformances(event: dict[str, Any], models: dict[str, type[pydantic.BaseModel]]) -> list[str]:
    """What is wrong with ``event`` by the SDK's model for its ``type`` (empty: it conforms)."""
    kind = event.get("type")
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        return [f"{kind!r}: no such server event in the SDK"]
    try:
        parsed = model.model_validate(event)
    except pydantic.ValidationError as e:
        return [f"{kind}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    return [f"{kind}{problem}" for problem in _extras(parsed, "")]
