"""The OpenAPI 3.1 description of the REST API, served at ``GET /openapi.json``.

Bodies are described by pydantic models: the wire models of :mod:`streamer.protocol` (``SessionConfig``,
``Limits``) and the shapes the REST handlers answer with (:mod:`streamer.openapi_bodies`). The document
is built once per process; its schemas come from the same models that validate requests, so the
description cannot drift from what the server accepts. The WebSocket protocol is not described here
(see docs/protocol.md).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from streamer import __version__
from streamer.openapi_bodies import (
    MODELS,
    ClientSecretBody,
    DeepgramErrorBody,
    DeepgramGrantBody,
    DeepgramGrantRequest,
    ErrorBody,
    HealthBody,
    ModelsBody,
    OpenAIErrorBody,
    OpenAIModel,
    OpenAIModelList,
    ReadinessBody,
    ResumeGrantBody,
    SessionGrantBody,
    TranscriptionBody,
    TranscriptionSessionBody,
)
from streamer.protocol import SessionConfig

REF = "#/components/schemas/{model}"


_ERRORS = {
    400: "Bad session config or request",
    401: "Missing or unknown API key",
    403: "Forbidden (origin not allowed, demo mode off)",
    404: "No such session (or model) on this server",
    429: "Rate or quota limit: retry after Retry-After seconds",
    503: "Overloaded, model unavailable or shutting down: retry after Retry-After seconds",
}
_RETRYABLE = (429, 503)


def _json(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _ERRORS[status],
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": _json({"$ref": _ref(ErrorBody)}),
    }
    if status in _RETRYABLE:
        response["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    if status == 401:
        response["headers"]["WWW-Authenticate"] = {"required": True, "schema": {"type": "string"}}
    return response


def _vendor_error(status: int, ref: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _ERRORS[status],
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": _json({"$ref": ref}),
    }
    if status in _RETRYABLE:
        response["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    return response


def _vendor_paths() -> dict[str, Any]:
    """The Deepgram- and OpenAI-compatible REST routes (their WebSockets are in docs/api-*.md)."""
    deepgram = {str(s): _vendor_error(s, _ref(DeepgramErrorBody)) for s in (400, 401, 503)}
    openai = {str(s): _vendor_error(s, _ref(OpenAIErrorBody)) for s in (400, 401, 503)}
    token_auth = [
        {
            "name": "Authorization",
            "in": "header",
            "required": False,
            "description": "Token <api key> (Deepgram's scheme; Bearer works too)",
            "schema": {"type": "string"},
        }
    ]
    json_body = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
    transcription_form = {
        "type": "object",
        "required": ["file", "model"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "model": {"type": "string"},
            "language": {"type": "string"},
            "prompt": {"type": "string"},
            "response_format": {"enum": ["json", "text", "srt", "verbose_json", "vtt"]},
            "timestamp_granularities[]": {"type": "array", "items": {"enum": ["word", "segment"]}},
            "stream": {"type": "boolean"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "include[]": {"type": "array", "items": {"enum": ["logprobs"]}},
            "keywords[]": {"type": "array", "items": {"type": "string"}},
            "chunking_strategy": {"enum": ["auto"]},
        },
    }
    translation_form = {
        "type": "object",
        "required": ["file", "model"],
        "properties": {
            name: transcription_form["properties"][name]  # type: ignore[index]
            for name in ("file", "model", "prompt", "response_format", "temperature")
        },
    }
    return {
        "/v1/auth/grant": {
            "post": {
                **_operation(
                    "Deepgram: a temporary token (single use) for GET /v1/listen",
                    {"200": _ok("Token granted", _ref(DeepgramGrantBody)), **deepgram},
                    parameters=token_auth,
                ),
                "requestBody": {
                    "required": False,
                    "content": _json({"$ref": _ref(DeepgramGrantRequest, "validation")}),
                },
            }
        },
        "/v1/realtime/client_secrets": {
            "post": {
                **_operation(
                    "OpenAI Realtime: a single-use client secret for one transcription session",
                    {"200": _ok("Secret created", _ref(ClientSecretBody)), **openai},
                    secured=True,
                ),
                "requestBody": json_body,
            }
        },
        "/v1/realtime/transcription_sessions": {
            "post": {
                **_operation(
                    "OpenAI Realtime (beta shape): a transcription session and its client secret",
                    {"200": _ok("Session created", _ref(TranscriptionSessionBody)), **openai},
                    secured=True,
                ),
                "requestBody": json_body,
            }
        },
        "/v1/models": {
            "get": _operation(
                "OpenAI: the names the speech model answers to", {"200": _ok("Models", _ref(OpenAIModelList))}
            )
        },
        "/v1/models/{model}": {
            "get": _operation(
                "OpenAI: one model by name",
                {
                    "200": _ok("The model", _ref(OpenAIModel)),
                    "404": _vendor_error(404, _ref(OpenAIErrorBody)),
                },
                parameters=[{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/v1/audio/transcriptions": {
            "post": {
                **_operation(
                    "OpenAI audio transcriptions: a whole file (any length), or events with stream=true",
                    {
                        "200": {
                            "description": "The transcript (JSON, text, SRT, VTT or server-sent events)",
                            "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
                            "content": {
                                "application/json": {"schema": {"$ref": _ref(TranscriptionBody)}},
                                "text/plain": {"schema": {"type": "string"}},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **openai,
                        "429": _vendor_error(429, _ref(OpenAIErrorBody)),
                    },
                    secured=True,
                ),
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": transcription_form}},
                },
            }
        },
        "/v1/audio/translations": {
            "post": {
                **_operation(
                    "OpenAI audio translations: speech in any language to English text (multilingual models)",
                    {
                        "200": {
                            "description": "The English text (JSON, text, SRT or VTT)",
                            "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
                            "content": {
                                "application/json": {"schema": {"$ref": _ref(TranscriptionBody)}},
                                "text/plain": {"schema": {"type": "string"}},
                            },
                        },
                        **openai,
                        "429": _vendor_error(429, _ref(OpenAIErrorBody)),
                    },
                    secured=True,
                ),
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": translation_form}},
                },
            }
        },
    }


def _ok(description: str, ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": _json({"$ref": ref}),
    }


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    secured: bool = False,
    body: bool = False,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}] if secured else [],
        "parameters": [{"$ref": "#/components/parameters/RequestId"}, *(parameters or [])],
        "responses": responses,
    }
    if body:
        op["requestBody"] = {
            "required": False,
            "description": "The session config; every field is optional (an empty body means defaults).",
            "content": _json({"$ref": _ref(SessionConfig, "validation")}),
        }
    return op


@functools.cache
def _schemas() -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], str], dict[str, Any]]:
    """``(model, mode) -> $ref`` and the component schemas, all in one pass (shared ``$defs``)."""
    refs, top = models_json_schema(MODELS, ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return {(m, mode): refs[(m, mode)]["$ref"] for m, mode in MODELS}, defs


def _ref(model: type[BaseModel], mode: JsonSchemaMode = "serialization") -> str:
    return _schemas()[0][(model, mode)]


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict: callers may change it)."""
    grant = _ref(SessionGrantBody)
    session_errors = {str(s): _error(s) for s in (400, 401, 429, 503)}
    paths: dict[str, Any] = {
        "/v1/sessions": {
            "post": _operation(
                "Start a session: a short-lived, single-use token for GET /v1/stream",
                {"201": _ok("Session created", grant), **session_errors},
                secured=True,
                body=True,
            )
        },
        "/v1/sessions/{session_id}/resume": {
            "post": _operation(
                "A fresh token for a session whose connection dropped (same API key only)",
                {
                    "201": _ok("Resume token issued", _ref(ResumeGrantBody)),
                    # 429: the key's resumes a minute (STREAMER_RESUME_RATE_PER_KEY_PER_MIN)
                    **{str(s): _error(s) for s in (401, 404, 429, 503)},
                },
                secured=True,
                parameters=[
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
            )
        },
        "/v1/demo/session": {
            "post": _operation(
                "Start a session for the demo page (demo mode, same origin only)",
                {"201": _ok("Session created", grant), **{str(s): _error(s) for s in (400, 403, 429, 503)}},
                body=True,
                parameters=[
                    {"name": "Origin", "in": "header", "required": False, "schema": {"type": "string"}},
                    {
                        "name": "Sec-Fetch-Site",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
            )
        },
        "/v1/stream/models": {
            "get": _operation(
                "The loaded models and what they support", {"200": _ok("Models", _ref(ModelsBody))}
            )
        },
        "/healthz": {"get": _operation("Liveness", {"200": _ok("The process is up", _ref(HealthBody))})},
        "/readyz": {
            "get": _operation(
                "Readiness: models loaded, breakers closed, state backend reachable, not draining",
                {
                    "200": _ok("Ready", _ref(ReadinessBody)),
                    "503": _ok("Not ready; the failing checks say why", _ref(ReadinessBody)),
                },
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        **_vendor_paths(),
        "/openapi.json": {
            "get": _operation(
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            )
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "streamer",
            "version": __version__,
            "description": "REST API of the real-time speech streaming server (protocol v1).",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas()[1],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key"}},
            "parameters": {
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "description": "Echoed back when 1-128 printable characters; otherwise one is issued",
                    "schema": {"type": "string"},
                }
            },
            "headers": {
                "RequestId": {"required": True, "schema": {"type": "string", "minLength": 1}},
                "RetryAfter": {
                    "required": True,
                    "description": "Whole seconds",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                },
            },
        },
    }
    # a deep copy, so no caller can change the cached schemas
    copied: dict[str, Any] = json.loads(json.dumps(doc))
    return copied


@functools.cache
def _document() -> bytes:
    return json.dumps(build_openapi()).encode()


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``."""
    return web.Response(body=_document(), content_type="application/json")
