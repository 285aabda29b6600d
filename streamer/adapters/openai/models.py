"""OpenAI's model list: ``GET /v1/models`` and ``GET /v1/models/{model}``, what ``client.models.list()``
and ``client.models.retrieve(id)`` read.

The server has one speech model; it answers to its own name and to the OpenAI names a migrating client
already sends (``model=whisper-1`` and the ``gpt-4o`` transcribe models), so each of those is listed.
Protocol v1's description of the loaded models moved to ``GET /v1/stream/models``; until clients have
moved, the list also carries its ``asr`` and ``mt`` fields (the SDK ignores fields it does not know).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from streamer.edge.handshake import SERVICES
from streamer.edge.rest import describe_models
from streamer.services import Services

OWNER = "streamer"
OPENAI_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
_LOADED_AT = int(time.time())  # "created": when this process started serving the model


def model_ids(services: Services) -> list[str]:
    """Every name the speech model answers to: its own first."""
    own = services.asr.name
    return [own, *(alias for alias in OPENAI_ALIASES if alias != own)]


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _LOADED_AT, "owned_by": OWNER}


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: OpenAI's list shape (plus protocol v1's deprecated ``asr`` and ``mt``)."""
    services = request.app[SERVICES]
    body = {"object": "list", "data": [_model(m) for m in model_ids(services)], **describe_models(services)}
    return web.json_response(body)


async def retrieve_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``: one model, or OpenAI's 404 ``model_not_found``."""
    name = request.match_info["model"]
    if name not in model_ids(request.app[SERVICES]):
        error = {
            "message": f"The model '{name[:200]}' does not exist on this server",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
        return web.json_response({"error": error}, status=404)
    return web.json_response(_model(name))


ROUTES = [web.get("/v1/models", list_models), web.get("/v1/models/{model}", retrieve_model)]
