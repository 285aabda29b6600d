"""The multipart form of ``POST /v1/audio/transcriptions``: its fields checked, its file spooled.

Read only after the request was admitted (see :mod:`streamer.adapters.upload_runner`): a refused request
costs the server no body. The file spills to a temporary file past a few megabytes and is refused past
OpenAI's 25 MB.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import IO

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from streamer.adapters.openai.wire import ClientEventError
from streamer.protocol import MAX_KEYWORD_CHARS, MAX_KEYWORDS, MAX_LANGUAGES, MAX_PROMPT_CHARS

MAX_UPLOAD_BYTES = 25 << 20  # OpenAI's limit for this endpoint
SPOOL_BYTES = 4 << 20  # larger uploads spill to a temporary file
FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
FIELDS = frozenset(
    {
        "file",
        "model",
        "language",
        "languages[]",
        "prompt",
        "response_format",
        "temperature",
        "timestamp_granularities[]",
        "stream",
        "include[]",
        "keywords[]",
        "chunking_strategy",
    }
)
INCLUDES = ("logprobs",)
# ``POST /v1/audio/translations``: speech in any language to English text
TRANSLATION_FIELDS = frozenset({"file", "model", "prompt", "response_format", "temperature"})
TRANSLATION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


@dataclass
class Form:
    """The request's fields (the file spooled)."""

    file: IO[bytes] | None = None
    filename: str = ""
    model: str = ""
    language: str | None = None
    languages: list[str] = field(default_factory=list)  # with no language: detection chooses among these
    response_format: str = "json"
    granularities: list[str] = field(default_factory=list)
    stream: bool = False
    prompt: str = ""  # Whisper's previous text
    temperature: float = 0.0
    keywords: list[str] = field(default_factory=list)  # words to favour (the model's hotwords)
    logprobs: bool = False  # include[]=logprobs
    translation: bool = False  # the translations endpoint's form


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> ClientEventError:
    return ClientEventError(message, code=code, param=param)


async def read_form(request: web.Request, *, translation: bool = False) -> Form:
    if not request.content_type.startswith("multipart/"):
        raise _bad("send multipart/form-data with a file field", code="invalid_request")
    form = Form(translation=translation)
    try:
        return await _fill(form, request)
    except (HttpProcessingError, ValueError) as e:  # what aiohttp's multipart parser refuses with
        if form.file is not None:
            form.file.close()
        raise _bad("the multipart body is malformed", code="invalid_request") from e
    except BaseException:
        if form.file is not None:
            form.file.close()
        raise


async def _fill(form: Form, request: web.Request) -> Form:
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise _bad("nested multipart bodies are not supported")
        name = part.name or ""
        if name.startswith("chunking_strategy["):  # the SDK's form of an object: {"type": "server_vad", ...}
            raise _bad(
                'chunking_strategy takes "auto" only: the server cuts the audio at pauses with its own VAD',
                param="chunking_strategy",
            )
        if name not in (TRANSLATION_FIELDS if form.translation else FIELDS):
            raise _bad(f"unknown parameter {name!r}", param=name, code="unknown_parameter")
        if name == "file":
            if form.file is not None:
                raise _bad("one file per request", param="file")
            form.file, form.filename = await _spool(part), part.filename or ""
            continue
        value = (await part.read(decode=True)).decode("utf-8", "replace").strip()
        if len(value) > 4096:
            raise _bad(f"{name} is too long", param=name)
        if name == "model":
            form.model = value
        elif name == "language":
            form.language = value or None
        elif name == "languages[]" and len(form.languages) < MAX_LANGUAGES:
            form.languages.append(value)
        elif name == "languages[]":
            raise _bad(f"at most {MAX_LANGUAGES} languages", param="languages")
        elif name == "response_format":
            formats = TRANSLATION_FORMATS if form.translation else FORMATS
            if value not in formats:
                raise _bad(f"response_format must be one of {', '.join(formats)}", param=name)
            form.response_format = value
        elif name == "timestamp_granularities[]":
            if value not in ("word", "segment"):
                raise _bad("timestamp_granularities[] takes word or segment", param=name)
            form.granularities.append(value)
        elif name == "stream":
            if value.lower() not in ("true", "false"):
                raise _bad("stream must be true or false", param=name)
            form.stream = value.lower() == "true"
        elif name == "prompt" and len(value) > MAX_PROMPT_CHARS:
            raise _bad(f"prompt is longer than {MAX_PROMPT_CHARS} characters", param=name)
        elif name == "prompt":
            form.prompt = value
        elif name == "temperature":
            form.temperature = _temperature(value)
        elif name == "include[]":
            if value not in INCLUDES:
                raise _bad(f"include[] takes {', '.join(INCLUDES)}", param=name)
            form.logprobs = True
        elif name == "keywords[]" and len(form.keywords) < MAX_KEYWORDS:
            if not value or len(value) > MAX_KEYWORD_CHARS:
                raise _bad(f"a keyword is 1 to {MAX_KEYWORD_CHARS} characters", param="keywords")
            form.keywords.append(value)
        elif name == "keywords[]":
            raise _bad(f"at most {MAX_KEYWORDS} keywords", param="keywords")
        elif name == "chunking_strategy" and value != "auto":
            raise _bad(
                'chunking_strategy takes "auto" (or a server_vad object, which is refused)', param=name
            )
    if form.file is None:
        raise _bad("a file is required", param="file", code="missing_required_parameter")
    if not form.model:
        raise _bad(
            "model is required (any name: the server has one model)", "model", "missing_required_parameter"
        )
    if form.granularities and form.response_format != "verbose_json":
        raise _bad(
            "timestamp_granularities[] needs response_format verbose_json", "timestamp_granularities[]"
        )
    if form.logprobs and form.response_format != "json":
        raise _bad("include[]=logprobs needs response_format json", "include[]")
    if form.stream and form.response_format not in ("json", "text"):
        raise _bad("stream=true answers as events: use response_format json or text", "stream")
    return form


def _temperature(value: str) -> float:
    try:
        temperature = float(value)
    except ValueError as e:
        raise _bad("temperature must be a number between 0 and 1", param="temperature") from e
    if not 0.0 <= temperature <= 1.0:
        raise _bad("temperature must be a number between 0 and 1", param="temperature")
    return temperature


async def _spool(part: BodyPartReader) -> IO[bytes]:
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned)
    size = 0
    while chunk := await part.read_chunk(1 << 16):
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            spool.close()
            raise ClientEventError(
                f"the file is larger than {MAX_UPLOAD_BYTES >> 20} MB", code="file_too_large", param="file"
            )
        spool.write(chunk)
    spool.seek(0)
    return spool
