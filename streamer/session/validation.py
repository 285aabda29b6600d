"""Edge validation, in one place for every surface (REST, WebSocket, admin, adapters).

A value that passes here is valid for the whole pipeline: a session config is checked against the loaded
models once, whether it arrives with ``POST /v1/sessions`` or a ``session.update``; pydantic errors become
the contract's error with one wording; origins are compared in the form browsers send them.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from streamer.errors import BadRequestError, ConfigError, StreamerError, UnsupportedLanguageError
from streamer.protocol import CLIENT_MESSAGE, ClientMessage, SessionConfig, SessionConfigPatch
from streamer.services import Services

M = TypeVar("M", bound=BaseModel)

# pydantic error types that mean the message's ``type`` is missing or unknown
_UNKNOWN_TYPE = ("union_tag_invalid", "union_tag_not_found", "model_type")


def describe(e: ValidationError, default_where: str = "body") -> str:
    """``where: what`` for the first problem pydantic found (``config.sample_rate: ...``)."""
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or default_where
    return f"{where}: {first.get('msg')}"


def parse_model(model: type[M], raw: bytes | str, what: str, error: type[StreamerError]) -> M:
    """``model`` from JSON, or ``error("invalid <what>: where: why")``."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise error(f"invalid {what}: {describe(e)}") from e


def parse_session_config(raw: bytes) -> SessionConfig:
    """A session config from a request body; an empty body is the default config."""
    if not raw.strip():
        return SessionConfig()
    return parse_model(SessionConfig, raw, "session config", ConfigError)


def parse_client_message(data: str | bytes) -> ClientMessage:
    """One WebSocket text message, or the contract's error for it."""
    try:
        return CLIENT_MESSAGE.validate_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        kind, loc = first.get("type", ""), ".".join(str(p) for p in first.get("loc", ()))
        if kind == "json_invalid":
            raise BadRequestError("message is not valid JSON") from e
        if kind in _UNKNOWN_TYPE:
            err = BadRequestError("unknown or missing message type")
            err.code = "unknown_message_type"
            raise err from e
        if "config" in loc:
            raise ConfigError(f"invalid session config: {describe(e)}") from e
        raise BadRequestError(f"invalid message: {describe(e)}") from e


def apply_update(patch: SessionConfigPatch, config: SessionConfig) -> SessionConfig:
    """``config`` with a ``session.update`` patch applied (the merged config is validated as a whole)."""
    try:
        return patch.apply(config)
    except ValidationError as e:
        raise ConfigError(f"invalid session config: {describe(e)}") from e


def check_session_config(services: Services, config: SessionConfig) -> None:
    """What the loaded models can do: the spoken language, the task, the translation targets."""
    asr = services.asr
    if config.language is not None and config.language not in asr.languages():
        raise ConfigError(f"language {config.language!r} is not supported by the ASR model {asr.name}")
    unknown = [code for code in config.languages if code not in asr.languages()]
    if unknown:
        raise ConfigError(f"languages {unknown} are not supported by the ASR model {asr.name}")
    if config.task == "translate" and not asr.multilingual:
        raise ConfigError(f"task 'translate' needs a multilingual ASR model; {asr.name} is English-only")
    check_translation_targets(services, config.language, config.translate_to)
    if config.diarize and services.speakers is None:
        raise ConfigError(
            "diarize is not available: the server has no speaker encoder (see STREAMER_SPEAKER_WEIGHTS)"
        )


def check_translation_targets(services: Services, source: str | None, targets: list[str]) -> None:
    """An unsupported target is refused, never silently ignored."""
    if not targets:
        return
    translator = services.translator
    if translator is None:
        raise UnsupportedLanguageError(
            "translation is not available: the server has no MT model (set STREAMER_MT_MODEL)"
        )
    bad = [t for t in targets if not translator.supports(source, t)]
    if bad:
        raise UnsupportedLanguageError(f"unsupported translation target(s): {', '.join(bad)}")


def normalize_origin(origin: str) -> str:
    """``https://Example.com/`` -> ``https://example.com`` (browsers send origins in this form)."""
    origin = origin.strip().rstrip("/")
    return origin if origin == "*" else origin.lower()


def origin_allowed(origin: str, allowed: tuple[str, ...], host: str) -> bool:
    """Whether a browser's ``Origin`` may use the API: on the allowlist (or ``*``), or the server itself."""
    wanted = normalize_origin(origin)
    listed = {normalize_origin(o) for o in allowed if o.strip()}
    if wanted in listed or "*" in listed:
        return True
    return wanted in (f"http://{host.lower()}", f"https://{host.lower()}")
